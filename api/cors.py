"""CORS for browser applications: the origins of ``DATAAPI_CORS_ORIGINS`` may call the APIs (Starlette's
``CORSMiddleware``); with none configured the middleware is not installed and no answer carries CORS headers.
Credentials are bearer tokens and API keys in headers, never cookies: ``allow_credentials`` stays off.
(``api/codec.py`` answers the Temporal UI's CORS on its own route.)"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from api.request_id import HEADER as REQUEST_ID

METHODS = ["GET", "POST", "PUT", "DELETE"]
# What the APIs read: tokens, JSON bodies, idempotency, the caller's request id, the Jobs API's identity headers.
REQUEST_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", REQUEST_ID, "x-api-key", "username",
                   "organization_id", "application_id", "client_id", "repository_id"]
# What a browser application may read of an answer besides the CORS-safelisted headers.
EXPOSED_HEADERS = [REQUEST_ID, "Retry-After", "Location", "Content-Disposition",
                   "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"]


def with_cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    if not origins:
        return app
    return CORSMiddleware(app, allow_origins=origins, allow_methods=METHODS, allow_headers=REQUEST_HEADERS,
                          expose_headers=EXPOSED_HEADERS, max_age=600)
