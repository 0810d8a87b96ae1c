"""JWT tokens: TokenService.verify and GET /api/v1/auth/permissions against forged and broken tokens, key
rotation, and the secret material they are built from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from api.app import create_app
from dataapi import secrets
from dataapi.identity.tokens import REQUIRED_CLAIMS, TokenError, TokenService
from dataapi.settings import Settings


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: dict) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def keyset(app, settings) -> dict:
    """The keyset the app signs with (the app fixture has generated it under var_dir)."""
    return secrets.jwt_keyset(settings)


@pytest.fixture
def tokens(app) -> TokenService:
    return app.state.ctx.tokens


@pytest.fixture
def signer(keyset):
    """Signs any payload with the app's real private key (or another key), as an attacker holding it would."""
    kid = keyset["signing_kid"]
    private = load_pem_private_key(keyset["keys"][kid]["private"].encode(), password=None)

    def sign(payload: dict, *, key=private, headers: dict | None = None) -> str:
        return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid, **(headers or {})})

    sign.kid = kid
    return sign


@pytest.fixture
def payload(settings) -> dict:
    """A complete, valid access-token payload."""
    now = int(time.time())
    return {
        "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": "1", "iat": now, "nbf": now,
        "exp": now + 600, "jti": "jti-" + str(now), "typ": "access", "cid": 1, "co": "acme", "akid": None,
        "act": ["data_api:execute"],
    }


async def assert_refused(client, tokens: TokenService, token: str) -> None:
    with pytest.raises(TokenError):
        tokens.verify(token, "access")
    r = await client.get("/api/v1/auth/permissions", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "UNAUTHORIZED"
    assert set(r.json()) == {"code", "message", "request_id"}


# --- the baseline: a token we sign correctly is accepted, so every refusal below is the attack's doing ---

async def test_self_signed_valid_token_is_accepted(client, tokens, signer, payload):
    token = signer(payload)
    assert tokens.verify(token, "access").actions == ("data_api:execute",)
    r = await client.get("/api/v1/auth/permissions", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": 1, "company_slug": "acme", "actions": ["data_api:execute"]}


def test_issue_and_verify_round_trip(tokens):
    token, issued = tokens.issue("access", user_id=7, company_id=3, company_slug="acme", api_key_id=11,
                                 actions=["data_api:get_job"])
    claims = tokens.verify(token, "access")
    assert claims == issued
    assert (claims.user_id, claims.company_id, claims.company_slug, claims.api_key_id) == (7, 3, "acme", 11)
    assert claims.actions == ("data_api:get_job",)
    assert claims.expires_at - time.time() == pytest.approx(600, abs=5)
    refresh, rc = tokens.issue("refresh", user_id=7, company_id=3, company_slug="acme", api_key_id=11,
                               family="fam-1")
    assert tokens.verify(refresh, "refresh").family == "fam-1"
    assert rc.expires_at - time.time() == pytest.approx(604_800, abs=5)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_token_types_are_not_interchangeable(tokens):
    ids = {"user_id": 1, "company_id": 1, "company_slug": "acme", "api_key_id": None}
    access, _ = tokens.issue("access", **ids)
    refresh, _ = tokens.issue("refresh", family="f", **ids)
    with pytest.raises(TokenError):
        tokens.verify(access, "refresh")
    with pytest.raises(TokenError):
        tokens.verify(refresh, "access")


# --- attacks -------------------------------------------------------------------------------------------

async def test_alg_none_is_refused(client, tokens, signer, payload):
    for alg in ("none", "None", "NONE"):
        token = f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': signer.kid})}.{b64json(payload)}."
        await assert_refused(client, tokens, token)


async def test_hmac_with_the_public_key_is_refused(client, tokens, keyset, signer, payload):
    """Algorithm confusion: an HS256 token whose HMAC secret is the (public) Ed25519 key PEM."""
    public_pem = keyset["keys"][signer.kid]["public"].encode()
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        signing_input = f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': signer.kid})}.{b64json(payload)}"
        sig = hmac.new(public_pem, signing_input.encode(), digest).digest()
        await assert_refused(client, tokens, f"{signing_input}.{b64(sig)}")


async def test_tampered_signature_is_refused(client, tokens, signer, payload):
    header, body, sig = signer(payload).split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[10] ^= 0x01
    await assert_refused(client, tokens, f"{header}.{body}.{b64(bytes(raw))}")


async def test_tampered_payload_is_refused(client, tokens, signer, payload):
    header, _, sig = signer(payload).split(".")
    forged = {**payload, "act": ["data_api:execute", "admin:users"], "sub": "2"}
    await assert_refused(client, tokens, f"{header}.{b64json(forged)}.{sig}")


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
async def test_each_required_claim_is_required(client, tokens, signer, payload, claim):
    assert set(REQUIRED_CLAIMS) == {"iss", "aud", "sub", "exp", "iat", "jti"}
    del payload[claim]
    await assert_refused(client, tokens, signer(payload))


async def test_expired_beyond_the_leeway_is_refused(client, tokens, signer, payload, settings):
    now = int(time.time())
    payload.update(iat=now - 700, nbf=now - 700, exp=now - settings.jwt_leeway_seconds - 5)
    await assert_refused(client, tokens, signer(payload))


def test_expired_within_the_leeway_is_accepted(tokens, signer, payload, settings):
    payload["exp"] = int(time.time()) - 1
    assert settings.jwt_leeway_seconds >= 3
    assert tokens.verify(signer(payload), "access").user_id == 1


@pytest.mark.parametrize("change", [
    {"iss": "someone-else"}, {"aud": "another-api"}, {"aud": ["dataapi", "another-api"]},
    {"iat": int(time.time()) + 3600}, {"nbf": int(time.time()) + 3600}, {"typ": "refresh"},
    {"sub": "not-a-number"}, {"cid": "1"},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
async def test_wrong_claims_are_refused(client, tokens, signer, payload, change):
    payload.update(change)
    await assert_refused(client, tokens, signer(payload))


async def test_unknown_kid_is_refused(client, tokens, signer, payload):
    await assert_refused(client, tokens, signer(payload, headers={"kid": "k-unknown"}))
    headerless = jwt.encode(payload, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    await assert_refused(client, tokens, headerless)


async def test_other_key_with_a_known_kid_is_refused(client, tokens, signer, payload):
    await assert_refused(client, tokens, signer(payload, key=Ed25519PrivateKey.generate()))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", "\u00e9.\u00e9.\u00e9"])
async def test_garbage_is_refused(client, tokens, token):
    if token:
        with pytest.raises(TokenError):
            tokens.verify(token, "access")
    r = await client.get("/api/v1/auth/permissions", headers={"Authorization": f"Bearer {token}".encode()})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer"}])
async def test_missing_bearer_is_refused(client, headers):
    r = await client.get("/api/v1/auth/permissions", headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHORIZED"
    assert r.headers["www-authenticate"] == "Bearer"


# --- key rotation --------------------------------------------------------------------------------------

async def test_key_rotation_keeps_old_tokens_valid(client, make_identity, login, settings, engine):
    creds = make_identity()
    old = await login(creds)
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]

    new_kid = secrets.rotate_keyset(settings)
    assert new_kid != old_kid
    rotated = create_app(settings, engine)
    transport = httpx.ASGITransport(app=rotated, client=("203.0.113.8", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/api/v1/auth/permissions", headers=bearer(old["access_token"]))
        assert r.status_code == 200, r.text

        r = await c.post("/api/v1/auth/api-key", json=creds.login_body())
        assert r.status_code == 200, r.text
        fresh = r.json()
        assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
        assert jwt.get_unverified_header(fresh["refresh_token"])["kid"] == new_kid

        r = await c.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert r.status_code == 200, r.text
        assert jwt.get_unverified_header(r.json()["access_token"])["kid"] == new_kid

    keyset = secrets.jwt_keyset(settings)
    assert keyset["signing_kid"] == new_kid and set(keyset["keys"]) == {old_kid, new_kid}
    assert (settings.var_dir / "jwt-keys.json").stat().st_mode & 0o777 == 0o600


def test_rotation_refuses_a_keyset_configured_in_settings(tmp_path):
    """A configured keyset is read from the setting, so writing a rotated one to var_dir would be ignored."""
    settings = Settings(var_dir=tmp_path / "var", jwt_keyset=json.dumps(secrets.new_keyset()))
    with pytest.raises(ValueError, match="DATAAPI_JWT_KEYSET"):
        secrets.rotate_keyset(settings)
    assert not (tmp_path / "var" / "jwt-keys.json").exists()


# --- secret material -----------------------------------------------------------------------------------

def test_generated_secrets_are_created_once_and_private(tmp_path):
    settings = Settings(var_dir=tmp_path / "var")
    key = secrets.secret_key(settings)
    assert len(key) >= 32 and secrets.secret_key(settings) == key
    assert (tmp_path / "var" / "secret-key").stat().st_mode & 0o777 == 0o600
    assert secrets.jwt_keyset(settings) == secrets.jwt_keyset(settings)
    assert secrets.secret_key(Settings(var_dir=tmp_path / "var", secret_key=" configured ")) == b"configured"


def test_concurrent_first_use_yields_one_complete_secret(tmp_path):
    """Processes starting together must all read the same, complete secret, never a half-written file."""
    for round_ in range(20):
        settings = Settings(var_dir=tmp_path / f"var{round_}")
        barrier = threading.Barrier(8)
        seen: list = []

        def read(settings=settings, barrier=barrier, seen=seen):
            barrier.wait()
            seen.append((secrets.secret_key(settings), json.dumps(secrets.jwt_keyset(settings))))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 8 and len(set(seen)) == 1
        key, keyset = seen[0]
        assert len(key) >= 32 and json.loads(keyset)["signing_kid"]
        assert sorted(p.name for p in settings.var_dir.iterdir()) == ["jwt-keys.json", "secret-key"]  # no leftovers
