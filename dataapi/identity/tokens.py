"""JWT access and refresh tokens: EdDSA (Ed25519) only, typed, with a keyset for rotation.

One key signs (``signing_kid``); every key of the keyset verifies, chosen by the token's ``kid`` header.
The algorithm is pinned, so ``alg: none`` and HMAC-with-the-public-key confusion are refused.

Access tokens are stateless: nothing revokes a live one (revoking a key or a refresh family stops the next
refresh, and an access token lives ``access_ttl``). So a verified access token stays valid until its ``exp``
(plus the leeway), and ``verify`` keeps a bounded memo of the verified ones, keyed by the token string: a repeated
token is answered without parsing or checking its signature again, until exactly the instant the full check
would call it expired. Only tokens that passed the full check go in, so the memo never accepts a token the check
would refuse.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey, Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]
MEMO_SIZE = 4096  # verified access tokens remembered per service (a few hundred bytes each)


class TokenError(Exception):
    """The token is missing, malformed, expired, wrongly signed or of the wrong type."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    company_id: int
    company_slug: str
    api_key_id: int | None
    jti: str
    typ: str
    expires_at: int
    family: str | None = None
    actions: tuple[str, ...] = ()


def _private_key(pem: str) -> Ed25519PrivateKey | Ed448PrivateKey:
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey | Ed448PrivateKey):
        raise ValueError(f"{ALGORITHM} signs with an Ed25519 or Ed448 key, not {type(key).__name__}")
    return key


def _public_key(pem: str) -> Ed25519PublicKey | Ed448PublicKey:
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey | Ed448PublicKey):
        raise ValueError(f"{ALGORITHM} verifies with an Ed25519 or Ed448 key, not {type(key).__name__}")
    return key


class TokenService:
    def __init__(self, keyset: dict, issuer: str, audience: str, leeway: int, access_ttl: int, refresh_ttl: int):
        self._signing_kid = keyset["signing_kid"]
        self._private = _private_key(keyset["keys"][self._signing_kid]["private"])
        self._public = {kid: _public_key(k["public"]) for kid, k in keyset["keys"].items()}
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self._verified = _Verified(MEMO_SIZE, leeway)

    def issue(self, typ: str, *, user_id: int, company_id: int, company_slug: str, api_key_id: int | None,
              family: str | None = None, actions: list[str] | None = None) -> tuple[str, Claims]:
        now = int(time.time())
        ttl = self.access_ttl if typ == "access" else self.refresh_ttl
        payload = {
            "iss": self.issuer, "aud": self.audience, "sub": str(user_id), "iat": now, "nbf": now,
            "exp": now + ttl, "jti": secrets.token_urlsafe(18), "typ": typ,
            "cid": company_id, "co": company_slug, "akid": api_key_id,
        }
        if typ == "refresh":
            payload["fam"] = family
        else:
            payload["act"] = list(actions or [])
        token = jwt.encode(payload, self._private, algorithm=ALGORITHM, headers={"kid": self._signing_kid})
        return token, _claims(payload)

    def verify(self, token: str, typ: str) -> Claims:
        if typ != "access":
            return self._verify(token, typ)
        claims = self._verified.get(token, time.time())
        if claims is None:
            claims = self._verify(token, typ)
            self._verified.put(token, claims)
        return claims

    def _verify(self, token: str, typ: str) -> Claims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._public.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise TokenError("unknown signing key")
            payload = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenError("token expired") from e
        except jwt.PyJWTError as e:
            raise TokenError("invalid token") from e
        if payload.get("typ") != typ:
            raise TokenError("wrong token type")
        try:
            return _claims(payload)
        except (KeyError, TypeError, ValueError) as e:
            raise TokenError("invalid token") from e


class _Verified:
    """Verified access tokens and their claims, oldest first; an entry answers while ``exp > now - leeway`` (the
    check PyJWT makes). Lookups take no lock (a dict read is atomic); inserts and evictions do."""

    def __init__(self, size: int, leeway: float):
        self.size, self.leeway = size, leeway
        self._claims: dict[str, Claims] = {}
        self._lock = threading.Lock()

    def get(self, token: str, now: float) -> Claims | None:
        claims = self._claims.get(token)
        if claims is None or claims.expires_at > now - self.leeway:
            return claims
        with self._lock:
            self._claims.pop(token, None)
        return None

    def put(self, token: str, claims: Claims) -> None:
        with self._lock:
            while len(self._claims) >= self.size:
                del self._claims[next(iter(self._claims))]
            self._claims[token] = claims


def _claims(p: dict) -> Claims:
    akid = p.get("akid")
    if akid is not None and not isinstance(akid, int):
        raise ValueError("akid")
    if not isinstance(p["cid"], int) or not isinstance(p["co"], str):
        raise ValueError("company")
    return Claims(
        user_id=int(p["sub"]), company_id=p["cid"], company_slug=p["co"], api_key_id=akid, jti=p["jti"],
        typ=p["typ"], expires_at=int(p["exp"]), family=p.get("fam"), actions=tuple(p.get("act") or ()),
    )
