"""Temporal workflow definitions: deterministic orchestration only, no IO."""
