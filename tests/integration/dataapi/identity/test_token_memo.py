"""The memo of verified access tokens (``TokenService.verify``): a repeated token skips the signature check, and
the memo accepts exactly what the full check accepts: the same string, the same type, until ``exp`` + leeway."""

from __future__ import annotations

import time

import pytest

from dataapi import secrets
from dataapi.identity.tokens import Claims, TokenError, TokenService, _Verified


def service(leeway: int = 0, access_ttl: int = 600) -> TokenService:
    return TokenService(secrets.new_keyset(), "dataapi", "dataapi", leeway, access_ttl, 3600)


def issue(tokens: TokenService, typ: str = "access") -> str:
    token, _ = tokens.issue(typ, user_id=7, company_id=3, company_slug="acme", api_key_id=None,
                            family="f" if typ == "refresh" else None, actions=["data_api:execute"])
    return token


def test_a_repeated_token_is_answered_from_the_memo():
    tokens = service()
    token = issue(tokens)
    first = tokens.verify(token, "access")
    assert first.user_id == 7 and first.actions == ("data_api:execute",)
    assert tokens.verify(token, "access") is first  # the very claims: no second decode


def test_a_memoised_token_expires_when_the_full_check_says_so():
    tokens = service(access_ttl=1)
    token = issue(tokens)
    claims = tokens.verify(token, "access")
    time.sleep(max(claims.expires_at - time.time(), 0) + 0.05)
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, "access")
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token, "access")


def test_the_memo_keeps_the_leeway_boundary_of_the_full_check():
    claims = Claims(user_id=1, company_id=1, company_slug="a", api_key_id=None, jti="j", typ="access",
                    expires_at=1_000)
    memo = _Verified(8, leeway=5)
    memo.put("t", claims)
    assert memo.get("t", 1_004.999) is claims  # PyJWT: expired once exp <= now - leeway
    assert memo.get("t", 1_005.0) is None
    assert memo.get("t", 1_000.0) is None  # dropped, not revived


def test_only_the_exact_verified_string_is_memoised():
    tokens = service()
    token = issue(tokens)
    tokens.verify(token, "access")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(TokenError):
        tokens.verify(forged, "access")
    other = service()  # another keyset: its tokens were never verified here
    with pytest.raises(TokenError):
        tokens.verify(issue(other), "access")


def test_types_are_checked_whatever_the_memo_holds():
    tokens = service()
    access, refresh = issue(tokens), issue(tokens, "refresh")
    tokens.verify(access, "access")
    with pytest.raises(TokenError, match="wrong token type"):
        tokens.verify(access, "refresh")
    tokens.verify(refresh, "refresh")
    with pytest.raises(TokenError, match="wrong token type"):
        tokens.verify(refresh, "access")


def test_the_memo_is_bounded():
    memo = _Verified(2, leeway=0)
    far = int(time.time()) + 600
    entries = [Claims(user_id=i, company_id=1, company_slug="a", api_key_id=None, jti=str(i), typ="access",
                      expires_at=far) for i in range(3)]
    for i, claims in enumerate(entries):
        memo.put(str(i), claims)
    now = time.time()
    assert memo.get("0", now) is None and memo.get("1", now) is entries[1] and memo.get("2", now) is entries[2]
