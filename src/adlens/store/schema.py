"""Catalog tables (SQLAlchemy Core) and their versioned migrations.

Portable SQL only (no SQLite-specific types) so that the same schema runs on PostgreSQL.
A migration is a function applied once, in order; the applied version lives in ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# One row per distinct file content (sha256 of the original bytes).
images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("n_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

image_hashes = sa.Table(
    "image_hashes",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("ahash_md5", sa.String(32), nullable=False, index=True),
    sa.Column("ahash_bits", sa.LargeBinary, nullable=False),
    # 64-bit hashes stored as signed int64 (two's complement) to fit BIGINT everywhere.
    sa.Column("phash", sa.BigInteger, nullable=False),
    sa.Column("dhash", sa.BigInteger, nullable=False),
)

creatives = sa.Table(
    "creatives",
    metadata,
    sa.Column("ad_id", sa.String(200), primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False, index=True),
    sa.Column("advertiser", sa.String(500)),
    sa.Column("campaign", sa.String(500)),
    sa.Column("text", sa.Text),
    sa.Column("landing_url", sa.Text),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("source_path", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("article_id", sa.String(200), primary_key=True),
    sa.Column("title", sa.Text),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("topic", sa.String(200)),
    sa.Column("ad_id", sa.String(200)),  # the ad this article was written for, if known
    sa.Column("url", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("product_id", sa.String(200), primary_key=True),
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False, index=True),
    sa.Column("title", sa.Text),
    sa.Column("category", sa.String(200)),
    sa.Column("url", sa.Text),
    sa.Column("source_path", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),  # running | done | failed
    sa.Column("summary_json", sa.Text),
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), nullable=False, index=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# A sighting = this image was seen as this ad on this day. Unique, so re-ingesting adds nothing.
sightings = sa.Table(
    "sightings",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
    sa.Column("ad_id", sa.String(200), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.PrimaryKeyConstraint("image_id", "ad_id", "day"),
)

# The dedup ledger: one row per distinct image, kept across runs and days.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), primary_key=True),
    sa.Column("first_seen", sa.String(10), nullable=False),
    sa.Column("last_seen", sa.String(10), nullable=False),
    sa.Column("times_seen", sa.Integer, nullable=False),
    sa.Column("canonical_id", sa.Integer, nullable=False, index=True),
)

# Near-duplicate links found between images, with the method that found them.
dup_links = sa.Table(
    "dup_links",
    metadata,
    sa.Column("image_a", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
    sa.Column("image_b", sa.Integer, sa.ForeignKey("images.id"), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("distance", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("image_a", "image_b", "method"),
)

V1_TABLES = [
    meta,
    images,
    image_hashes,
    creatives,
    articles,
    products,
    runs,
    rejections,
    sightings,
    ledger,
    dup_links,
]


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=V1_TABLES)


# ---------------------------------------------------------------- v2: serving / bandit state
# An arm = a creative the service can choose. Counters are only ever changed by atomic
# ``x = x + 1`` updates inside the transaction that records the event causing them.
bandit_arms = sa.Table(
    "bandit_arms",
    metadata,
    sa.Column("arm_id", sa.String(200), primary_key=True),
    sa.Column("quality", sa.Float),  # last predicted quality, normalised to [0, 1] (cold-start prior)
    sa.Column("impressions", sa.Integer, nullable=False),
    sa.Column("clicks", sa.Integer, nullable=False),
    sa.Column("conversions", sa.Integer, nullable=False),
    sa.Column("dwell_ms", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# One row per /v1/select answer: everything off-policy evaluation needs (candidates, the policy's
# probabilities = propensities, each candidate's score components) plus what happened after.
bandit_decisions = sa.Table(
    "bandit_decisions",
    metadata,
    sa.Column("decision_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("context_id", sa.String(200)),
    sa.Column("context_hash", sa.String(64), nullable=False),
    sa.Column("policy", sa.Text, nullable=False),  # JSON of the policy config
    sa.Column("weights", sa.Text, nullable=False),  # JSON of the composite weights
    sa.Column("model_version", sa.String(32)),
    sa.Column("chosen", sa.String(200), nullable=False),
    sa.Column("propensity", sa.Float, nullable=False),
    sa.Column("candidates", sa.Text, nullable=False),  # JSON: [{"id", "p", components...}]
    sa.Column("x", sa.Text),  # JSON feature vector of the chosen candidate (contextual policies)
    sa.Column("impression", sa.Integer, nullable=False),  # 0/1: an impression was counted
    sa.Column("clicked", sa.Integer, nullable=False),  # 0/1: a click was counted (reward)
    sa.Column("converted", sa.Integer, nullable=False),
    sa.Column("dwell_ms", sa.Float, nullable=False),
)

# Feedback events; the client's event_id makes a retry a no-op.
bandit_events = sa.Table(
    "bandit_events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("decision_id", sa.String(64), sa.ForeignKey("bandit_decisions.decision_id"), nullable=False,
              index=True),
    sa.Column("type", sa.String(16), nullable=False),  # impression | click | conversion | dwell
    sa.Column("value", sa.Float),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("counted", sa.Integer, nullable=False),  # 1 if it changed the arm's counters
)

# Small named JSON documents: current composite weights and their history, service settings.
bandit_state = sa.Table(
    "bandit_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# API keys of the service, stored as sha256 of the key (never the key itself).
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Integer, nullable=False),
)

V2_TABLES = [bandit_arms, bandit_decisions, bandit_events, bandit_state, api_keys]


def _v2(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=V2_TABLES)


# version -> migration. Append new versions; never edit an applied one.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {1: _v1, 2: _v2}
SCHEMA_VERSION = max(MIGRATIONS)
