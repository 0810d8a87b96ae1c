"""``python -m bench``: the Data API benchmark harness (see bench/README.md)."""
