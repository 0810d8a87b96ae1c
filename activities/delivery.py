"""One webhook delivery attempt: re-check the URL, resolve it once, POST to the checked address.

The connection goes to an address ``resolve`` checked, never to the name again, so DNS cannot change the
destination after the check (rebinding); the name is still used for SNI, certificate verification and the Host
header. Redirects are never followed, the whole attempt is bounded by one timeout, and the response body is read
up to a limit and discarded. Outcomes follow Stripe/Svix practice: any non-2xx is retried except 410 (gone).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache

import httpx

from dataapi.callbacks.url import (
    Resolver,
    Target,
    UnresolvableHost,
    UnsafeCallbackUrl,
    check_url,
    format_authority,
    resolve,
)
from dataapi.statuses import AttemptOutcome

MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


@dataclass
class Attempt:
    status_code: int | None
    error: str | None  # short, safe to store and show: never the URL, headers or body
    retry_after_seconds: float | None
    duration_ms: int
    outcome: AttemptOutcome


@lru_cache(maxsize=8)
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """System CAs plus the operator's extra ones (a private CA); verification is always on."""
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):  # unparsable, or a date without a time zone
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


async def _post(target: Target, addresses: list[str], body: bytes, headers: dict, ctx: ssl.SSLContext,
                io_timeout: float, max_response_bytes: int) -> httpx.Response:
    # A client per attempt: pooled connections are keyed by IP and must never carry another host's request.
    # trust_env=False: a proxy from the environment would connect to the name, not the checked address.
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=io_timeout, follow_redirects=False) as client:
        for i, address in enumerate(addresses):
            request = client.build_request(
                "POST", f"https://{format_authority(address, target.port)}{target.path_and_query}", content=body,
                headers={**{k: v for k, v in headers.items() if k.lower() != "host"}, "host": target.authority},
                extensions={"sni_hostname": target.host})  # verify the certificate against the name, not the IP
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError:
                if i == len(addresses) - 1:
                    raise
                continue  # the next checked address of the same answer
            try:
                read = 0
                async for chunk in response.aiter_raw():  # raw: no decompression bomb either
                    read += len(chunk)
                    if read >= max_response_bytes:
                        break
            finally:
                await response.aclose()
            return response
    raise AssertionError("resolve() returns at least one address")


def _describe(e: httpx.HTTPError) -> str:
    if isinstance(e, httpx.TimeoutException):
        return f"timed out ({type(e).__name__})"
    return f"{type(e).__name__}: {e}"[:200] if str(e) else type(e).__name__


async def deliver(url: str, body: bytes, headers: dict, *, allow_cidrs: list[str], ca_bundle: str | None = None,
                  timeout: float = 15.0,  # noqa: ASYNC109 - the attempt's own bound, enforced with asyncio.timeout
                  max_response_bytes: int = 65536, resolver: Resolver | None = None,
                  allow_hosts: list[str] | tuple[str, ...] = ()) -> Attempt:
    started = time.monotonic()

    def attempt(outcome: AttemptOutcome, error: str | None, status: int | None = None,
                retry_after: float | None = None) -> Attempt:
        return Attempt(status, error, retry_after, round((time.monotonic() - started) * 1000), outcome)

    try:
        async with asyncio.timeout(timeout):
            # re-checked: the rules or allow-lists may have changed
            target = check_url(url, allow_cidrs=allow_cidrs, allow_hosts=allow_hosts)
            addresses = await asyncio.to_thread(resolve, target, allow_cidrs, resolver)
            response = await _post(target, addresses, body, headers, _ssl_context(ca_bundle), timeout,
                                   max_response_bytes)
    except UnresolvableHost as e:  # DNS may be down for a while: not a reason to give up
        return attempt(AttemptOutcome.RETRY, e.reason)
    except UnsafeCallbackUrl as e:
        return attempt(AttemptOutcome.REFUSED, e.reason)
    except TimeoutError:
        return attempt(AttemptOutcome.RETRY, f"timed out after {timeout:g} s")
    except httpx.HTTPError as e:
        return attempt(AttemptOutcome.RETRY, _describe(e))
    status = response.status_code
    if 200 <= status < 300:
        return attempt(AttemptOutcome.DELIVERED, None, status)
    retry_after = retry_after_seconds(response.headers.get("retry-after")) if status in (429, 503) else None
    outcome = AttemptOutcome.GONE if status == 410 else AttemptOutcome.RETRY
    return attempt(outcome, f"HTTP {status}", status, retry_after)
