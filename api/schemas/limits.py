"""OpenAPI of the execute limits (``api/limits.py``): the IETF draft's ``RateLimit-*`` headers on every answer
of an execute, and its 429 ``RATE_LIMITED`` with ``Retry-After``."""

from __future__ import annotations

_INT = {"type": "integer", "minimum": 0}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Requests per minute of the limit closest to exhaustion (the API key's or "
                                       "the company's); absent when no limit applies", "schema": _INT},
    "RateLimit-Remaining": {"description": "Requests left of it in the current minute", "schema": _INT},
    "RateLimit-Reset": {"description": "Seconds until the current minute's window ends", "schema": _INT},
    "RateLimit-Policy": {"description": 'Every limit that applies, e.g. `60;w=60;comment="API key", '
                                        '600;w=60;comment="company"`', "schema": {"type": "string"}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
REASON = ("RATE_LIMITED: the API key's or the company's requests per minute are used up, or the company has its "
          "most sync executions in flight (Retry-After says when to retry)")


def with_rate_limits(answers: dict, other_429: bool = False) -> dict:
    """``answers`` (a responses object with a 429) with the rate-limit headers on every answer, and the 429's
    ``Retry-After`` and reason; ``other_429``: the 429 has another reason too (the Jobs API's wrong secrets)."""
    out = {}
    for status, answer in answers.items():
        headers = {**answer.get("headers", {}), **RATE_LIMIT_HEADERS}
        if status == "429":
            reason = f"{answer['description']}; or {REASON}" if other_429 else REASON
            answer = {**answer, "description": reason}
            headers.update(RETRY_AFTER)
        out[status] = {**answer, "headers": headers}
    return out
