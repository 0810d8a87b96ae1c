"""The OpenAPI fragments of each API, one module per API (``OPENAPI``: paths to operations), out of the route
modules."""
