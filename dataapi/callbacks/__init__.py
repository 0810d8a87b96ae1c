"""Callbacks: where a finished Data API job's result is delivered, and how.

``url`` decides which callback addresses may be reached, ``webhooks`` signs a delivery (Standard Webhooks),
``secrets`` keeps each company's signing secrets, ``deliveries`` records every delivery and attempt."""
