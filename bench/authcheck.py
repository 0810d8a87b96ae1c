"""``python -m bench.authcheck [--out bench/results/authcheck.json]``: auth hardening figures, under a minute.

Against real ``dataapi api`` processes (uvicorn, loopback, a real SQLite store in a temp var dir), started with
the defaults of the failure limiter (10 wrong secrets per (API key id, client address) and 100 per client
address across key ids, in a 60 s window; the secret is checked first, so a correct one is never refused) and
of the access token (600 s), and a second one with a 3 s window to show the limit lifting. The limiter lives
in the API process and keys on the address the server sees, so it is measured over real connections from
distinct loopback source addresses (127.0.0.x, 127.0.1.x: the whole 127/8 is local on Linux) rather than an
in-process app. No Temporal server is started: the auth routes, the Admin API's key revocation and the
Jobs API's credential check never reach it (``DATAAPI_API_QUERY_WORKER=false``).

Measured:
- wrong secrets accepted (401) per (key id, address) and per address across key ids before the first 429, and
  the Retry-After given; that wrong secrets for one key spread over addresses are never limited as a whole;
- that a correct secret is never refused: from the limited address, for the limited key, on login and on the
  Jobs API's ``x-api-key`` (same limiter); a valid refresh token from an address limited for invalid ones;
- with a 3 s window: after waiting the Retry-After, failing attempts are answered 401 again;
- revocation: revoking a key (Admin API ``DELETE /api/v1/admin/keys/{key_id}``) or disabling its user
  (``dataapi users disable``), then the time until the next refresh fails, the login and the Jobs API too;
- the access token after revocation: still accepted (stateless, verified without a database read) and for
  how long at most (its ``exp`` - ``iat``, plus the verification leeway).

Exit status 0 when every figure matches the documented behaviour, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench import report
from bench.procs import Processes, free_port, wait_http
from bench.tenant import DATAAPI, dataapi
from dataapi.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
COMPANY = "authcheck"
LOGIN, REFRESH, PERMISSIONS = "/api/v1/auth/api-key", "/api/v1/auth/refresh", "/api/v1/auth/permissions"
CAP = 200  # stop counting failures here: no limit at all


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Api:
    """One ``dataapi api`` process; ``client(address)`` connects from that loopback source address."""

    def __init__(self, base: str):
        self.base = base
        self._clients: dict[str, httpx.Client] = {}

    def client(self, address: str) -> httpx.Client:
        if address not in self._clients:
            transport = httpx.HTTPTransport(local_address=address)
            self._clients[address] = httpx.Client(base_url=self.base, transport=transport, timeout=30)
        return self._clients[address]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


class Addresses:
    """Fresh loopback source addresses: every one a client the limiter has not seen."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"127.0.{1 + self.n // 250}.{1 + self.n % 250}"


def _key_body(creds: dict, **change) -> dict:
    return {"company_slug": COMPANY, "api_key": creds["api_key"], "api_secret": creds["api_secret"]} | change


def _jobs_headers(creds: dict, secret: str | None = None) -> dict:
    return {"username": creds["user"], "organization_id": COMPANY, "application_id": "app", "client_id": "client",
            "x-api-key": f"{creds['api_key']}.{secret or creds['api_secret']}"}


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def count_until_429(send: Callable[[int], httpx.Response]) -> tuple[int, httpx.Response | None, list[int]]:
    """Sends ``send(i)`` until a 429: (how many were answered before it, the 429, the statuses before it)."""
    statuses = []
    for i in range(CAP):
        r = send(i)
        if r.status_code == 429:
            return i, r, statuses
        statuses.append(r.status_code)
    return CAP, None, statuses


def _retry_after(r: httpx.Response | None) -> int | None:
    return int(r.headers["retry-after"]) if r is not None and "retry-after" in r.headers else None


# --- the setup --------------------------------------------------------------------------------------------

USERS = (("admin", ["CompanyAdmin"]), ("victim", ["DataAPIConsumer", "JobsAPIConsumer"]),
         ("bystander", ["DataAPIConsumer"]), ("revoked", ["JobsAPIConsumer"]), ("disabled", ["JobsAPIConsumer"]),
         ("jobs", ["JobsAPIConsumer"]), ("refresher", ["DataAPIConsumer"]), ("window", ["DataAPIConsumer"]))


def make_store(env: dict) -> dict:
    """The company, an admin and a few integration users with one key each, made with the ``dataapi`` command.
    The signing keys are made now, so that the API processes share them instead of racing to make them."""
    dataapi(env, "db", "upgrade")
    dataapi(env, "jwt", "rotate")
    dataapi(env, "companies", "create", COMPANY, "--name", "Auth check")

    def user(name: str, policies: list[str]) -> tuple[str, dict]:
        dataapi(env, "users", "create", "--company", COMPANY, "--name", name,
                *(arg for p in policies for arg in ("--policy", p)))
        key = json.loads(dataapi(env, "keys", "create", "--company", COMPANY, "--user", name, "--json"))
        return name, {"user": name, "api_key": key["api_key"], "api_secret": key["api_secret"]}

    with ThreadPoolExecutor(4) as pool:  # independent commands; the store takes their writes one at a time
        return dict(pool.map(lambda u: user(*u), USERS))


def _env(settings: Settings, port: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAPI_")}
    env.update(DATAAPI_VAR_DIR=str(settings.var_dir), DATAAPI_API_PORT=str(port),
               DATAAPI_TEMPORAL_ADDRESS=settings.temporal_address, DATAAPI_API_QUERY_WORKER="false", **extra)
    return env


# --- the checks -------------------------------------------------------------------------------------------

class Check:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name: str, figure, expected: str, ok: bool) -> None:
        self.rows.append({"check": name, "figure": figure, "expected": expected, "ok": bool(ok)})
        log(f"{'ok  ' if ok else 'FAIL'} {name}: {figure}")


def rate_limits(api: Api, creds: dict, fresh: Addresses, settings: Settings, check: Check) -> None:
    limit, window = settings.auth_max_failures, settings.auth_failure_window_seconds
    victim, bystander = creds["victim"], creds["bystander"]

    # per (key id, address): wrong secrets for one key from one address
    addr = fresh()
    n, r429, statuses = count_until_429(lambda i: api.client(addr).post(LOGIN, json=_key_body(
        victim, api_secret=f"wrong-{i}")))
    check.add("wrong secrets per (key id, address) before 429", n, f"{limit} (then 429)",
              n == limit and set(statuses) == {401})
    check.add("Retry-After of the pair limit (s)", _retry_after(r429), f"1..{window:g}",
              r429 is not None and 1 <= _retry_after(r429) <= window)
    r = api.client(fresh()).post(LOGIN, json=_key_body(victim))
    check.add("the owner's correct secret, another address", r.status_code, "200", r.status_code == 200)
    r = api.client(addr).get("/api/v1/job/x/result", headers=_jobs_headers(victim))
    check.add("the owner's x-api-key from the limited address", r.status_code, "404 (accepted; no such job)",
              r.status_code == 404)
    r = api.client(addr).post(LOGIN, json=_key_body(victim))
    check.add("the owner's correct secret from the limited address", r.status_code, "200", r.status_code == 200)

    # per key, spread over addresses: never limited as a whole (that would let anyone lock the owner out)
    statuses = [api.client(fresh()).post(LOGIN, json=_key_body(victim, api_secret=f"spread-{i}")).status_code
                for i in range(3 * limit)]
    check.add("wrong secrets for one key, each from a new address", f"{len(statuses)} x {sorted(set(statuses))}",
              "all 401 (no lock-out per key)", set(statuses) == {401})

    # per address across key ids (spraying)
    addr = fresh()
    n, r429, _ = count_until_429(lambda i: api.client(addr).post(LOGIN, json=_key_body(
        victim, api_key=f"s42_{i:020d}")))
    check.add("wrong secrets per address across key ids before 429", n, f"{10 * limit} (then 429)",
              n == 10 * limit)
    r = api.client(addr).post(LOGIN, json=_key_body(bystander))
    check.add("a correct secret from the spraying address", r.status_code, "200", r.status_code == 200)
    r = api.client(fresh()).post(LOGIN, json=_key_body(bystander, api_secret=f"wrong-{0}"))
    check.add("a wrong secret from another address meanwhile", r.status_code, "401", r.status_code == 401)

    # the Jobs API's x-api-key counts on the same limiter
    addr = fresh()
    n, r429, statuses = count_until_429(lambda i: api.client(addr).get(
        "/api/v1/job/x/result", headers=_jobs_headers(creds["jobs"], secret=f"wrong-{i}")))
    check.add("Jobs API wrong x-api-key per (key id, address) before 429", n, f"{limit} (then 429)",
              n == limit and set(statuses) == {401} and _retry_after(r429) is not None)
    r = api.client(addr).get("/api/v1/job/x/result", headers=_jobs_headers(creds["jobs"]))
    check.add("Jobs API correct x-api-key from that address", r.status_code, "404 (accepted; no such job)",
              r.status_code == 404)

    # refresh: invalid tokens, per client address; a valid one is always taken
    pair = api.client(fresh()).post(LOGIN, json=_key_body(creds["refresher"])).json()
    addr = fresh()
    n, r429, _ = count_until_429(lambda i: api.client(addr).post(REFRESH, json={"refresh_token": f"x.y.{i}"}))
    check.add("invalid refresh tokens per client address before 429", n, f"{limit} (then 429)", n == limit)
    r = api.client(addr).post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    check.add("valid refresh token from that address", r.status_code, "200", r.status_code == 200)


def window_lifts(api: Api, creds: dict, fresh: Addresses, window: float, limit: int, check: Check) -> None:
    addr, other = fresh(), creds["window"]
    n, r429, _ = count_until_429(lambda i: api.client(addr).post(LOGIN, json=_key_body(
        other, api_secret=f"wrong-{i}")))
    wait = _retry_after(r429)
    check.add(f"{window:g} s window: failures before 429, Retry-After", f"{n}, {wait} s",
              f"{limit}, 1..{window:g} s", n == limit and wait is not None and 1 <= wait <= window)
    if wait is None:
        return
    time.sleep(wait)
    r = api.client(addr).post(LOGIN, json=_key_body(other, api_secret=f"wrong-{limit}"))
    check.add("a wrong secret after waiting Retry-After", r.status_code, "401 (counted afresh)",
              r.status_code == 401)


def revocation(api: Api, creds: dict, fresh: Addresses, settings: Settings, env: dict, check: Check) -> dict:
    """Revokes a key through the Admin API and disables a user through the CLI; times the next refresh."""
    c = api.client(fresh())
    admin = c.post(LOGIN, json=_key_body(creds["admin"])).json()["access_token"]
    leeway, out = settings.jwt_leeway_seconds, {}

    def revoke_key(who: dict) -> None:
        r = c.delete(f"/api/v1/admin/keys/{who['api_key']}", headers={"Authorization": f"Bearer {admin}"})
        r.raise_for_status()

    def disable_user(who: dict) -> None:
        dataapi(env, "users", "disable", "--company", COMPANY, "--name", who["user"])

    for label, who, withdraw in (("key revoked (Admin API)", creds["revoked"], revoke_key),
                                 ("user disabled (CLI)", creds["disabled"], disable_user)):
        pair = c.post(LOGIN, json=_key_body(who)).json()
        pair = c.post(REFRESH, json={"refresh_token": pair["refresh_token"]}).json()  # refresh works before
        assert c.get("/api/v1/job/x/result", headers=_jobs_headers(who)).status_code == 404  # the key works
        withdraw(who)
        done = time.perf_counter()
        r = c.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        ms = (time.perf_counter() - done) * 1000
        check.add(f"{label}: the next refresh", f"{r.status_code} after {ms:.1f} ms (1st call)", "401 at once",
                  r.status_code == 401)
        login = c.post(LOGIN, json=_key_body(who)).status_code
        jobs = c.get("/api/v1/job/x/result", headers=_jobs_headers(who)).status_code
        check.add(f"{label}: login, Jobs API x-api-key", f"{login}, {jobs}", "401, 401", login == jobs == 401)
        claims = _claims(pair["access_token"])
        still = c.get(PERMISSIONS, headers={"Authorization": f"Bearer {pair['access_token']}"}).status_code
        lifetime, left = claims["exp"] - claims["iat"], claims["exp"] - time.time()
        check.add(f"{label}: access token issued before", f"{still}; valid {left:.0f} s more (lifetime {lifetime} s "
                  f"+ {leeway} s leeway)", f"200 until exp, lifetime <= {settings.access_token_ttl_seconds} s",
                  still == 200 and lifetime <= settings.access_token_ttl_seconds)
        out[label] = {"next_refresh_status": r.status_code, "next_refresh_ms": round(ms, 1), "login": login,
                      "jobs_api": jobs, "old_access_token": still, "access_lifetime_s": lifetime,
                      "access_valid_for_s": round(left), "leeway_s": leeway}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.authcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RESULTS / "authcheck.json", help="JSON results")
    args = p.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="dataapi-authcheck-"))
    procs = Processes(work / "logs")
    settings = Settings(var_dir=work / "var", temporal_address=f"127.0.0.1:{free_port()}")  # nothing listens
    settings.var_dir.mkdir(parents=True)
    short = 3
    apis: list[Api] = []
    check = Check()
    try:
        ports = free_port(), free_port()
        env = _env(settings, ports[0])
        creds = make_store(env)
        procs.start("api", [DATAAPI, "api"], env, cwd=work)
        procs.start("api-short-window", [DATAAPI, "api"],
                    _env(settings, ports[1], DATAAPI_AUTH_FAILURE_WINDOW_SECONDS=str(short)), cwd=work)
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/healthz", procs, within=60)
            apis.append(Api(f"http://127.0.0.1:{port}"))
        log(f"two API processes up in {time.monotonic() - started:.1f} s (defaults: "
            f"{settings.auth_max_failures} failures / {settings.auth_failure_window_seconds:g} s, access token "
            f"{settings.access_token_ttl_seconds} s; the second with a {short} s window)")
        fresh = Addresses()
        rate_limits(apis[0], creds, fresh, settings, check)
        window_lifts(apis[1], creds, fresh, short, settings.auth_max_failures, check)
        revoked = revocation(apis[0], creds, fresh, settings, env, check)
        procs.check()
    except Exception:
        shutil.copytree(work / "logs", Path(tempfile.mkdtemp(prefix="dataapi-authcheck-logs-")), dirs_exist_ok=True)
        raise
    finally:
        for api in apis:
            api.close()
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)

    seconds = round(time.monotonic() - started, 1)
    width = max(len(r["check"]) for r in check.rows)
    fig = max(len(str(r["figure"])) for r in check.rows)
    print(f"\nAuth hardening figures ({seconds} s; real `dataapi api` processes, SQLite store, loopback clients)")
    print(f"{'check':<{width}}  {'figure':<{fig}}  {'documented / expected':<32} result")
    for r in check.rows:
        print(f"{r['check']:<{width}}  {r['figure']!s:<{fig}}  {r['expected']:<32} {'ok' if r['ok'] else 'FAIL'}")
    results = {"seconds": seconds, "settings": {"auth_max_failures": settings.auth_max_failures,
                                                "auth_failure_window_seconds": settings.auth_failure_window_seconds,
                                                "access_token_ttl_seconds": settings.access_token_ttl_seconds,
                                                "jwt_leeway_seconds": settings.jwt_leeway_seconds},
               "checks": check.rows, "revocation": revoked}
    report.write_json(results, args.out, depth=2)
    print(f"Results: {args.out}")
    return 0 if all(r["ok"] for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
