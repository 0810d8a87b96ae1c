"""Helpers and fixtures the tests share (tests/README.md): never imported from one test module into another."""
