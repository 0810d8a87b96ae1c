"""Data API: shared domain code (settings, store, identity, tokens, query parameters, artifacts)."""
