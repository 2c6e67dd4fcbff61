"""Reading and validating user inputs: image folders, CSV/JSONL manifests, articles, products."""
