"""JWT access and refresh tokens: EdDSA (Ed25519) only, typed, with a keyset for rotation.

One key signs (``signing_kid``); every key of the keyset verifies, chosen by the token's ``kid`` header.
The algorithm is pinned, so ``alg: none`` and HMAC-with-the-public-key confusion are refused.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey, Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]


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
