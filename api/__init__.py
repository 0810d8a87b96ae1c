"""HTTP layer: routing, authentication, request parsing and error mapping. Thin by design."""
