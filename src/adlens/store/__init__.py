"""Persistence: the catalog database, content-addressed image blobs, artifacts."""
