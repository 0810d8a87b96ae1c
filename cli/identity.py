"""Companies, their users and the users' API keys (the same services as the Admin API)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import getpass
import json
import sys

from sqlmodel import Session

from cli.common import CliError, Subparsers, add, engine, group, hasher
from dataapi import limits
from dataapi.db import session_scope
from dataapi.errors import NotFound
from dataapi.identity import passwords, sessions
from dataapi.identity import service as identity
from dataapi.identity.policies import POLICIES
from dataapi.models import Company, User
from dataapi.settings import Settings
from dataapi.statuses import UserKind


def cmd_companies_create(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.create_company(s, args.slug, args.name)
        print(f"created company {company.slug}")


def cmd_companies_limits(args: argparse.Namespace, settings: Settings) -> None:
    """Shows a company's execute limits; with options, sets its own values first (``--reset``: the defaults)."""
    given = {"company_per_minute": args.requests_per_minute, "key_per_minute": args.key_requests_per_minute,
             "sync_concurrency": args.sync_concurrency}
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        override = limits.Override() if args.reset else limits.get_override(s, company)
        override = dataclasses.replace(override, **{k: v for k, v in given.items() if v is not None})
        if args.reset or any(v is not None for v in given.values()):
            limits.set_override(s, company, override)
    defaults = limits.default_limits(settings)
    for label, name in (("requests per minute, the company's", "company_per_minute"),
                        ("requests per minute, each API key's", "key_per_minute"),
                        ("sync executions in flight per API process", "sync_concurrency")):
        own = getattr(override, name)
        value = getattr(defaults, name) if own is None else own
        shown = "no limit" if value == 0 and name != "sync_concurrency" else str(value)
        print(f"{label}: {shown} ({'default' if own is None else 'this company'})")


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        kind = UserKind.HUMAN if args.human else args.kind
        user = identity.create_user(s, company, args.name, args.policy or [], kind=kind)
        policies = ", ".join(args.policy or []) or "no policy"
        print(f"created {user.kind} user {user.name} in {company.slug} with {policies}")


def _company_user(s: Session, args: argparse.Namespace) -> tuple[Company, User]:
    company = identity.require_company(s, args.company)
    try:
        return company, identity.require_user(s, company, args.name)
    except NotFound:
        raise CliError(f"user {args.name!r} does not exist in {company.slug!r}") from None


def cmd_users_disable(args: argparse.Namespace, settings: Settings, disabled: bool = True) -> None:
    with session_scope(engine(settings)) as s:
        company, user = _company_user(s, args)
        identity.set_user_disabled(s, user, disabled)
        if disabled:
            sessions.end_user_sessions(s, user.id or 0)  # their console sessions end now
        print(f"user {user.name} {'disabled' if disabled else 'enabled'}")


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != password:
        raise CliError("the two passwords differ")
    return password


def cmd_users_set_password(args: argparse.Namespace, settings: Settings) -> None:
    """Sets a human user's password (prompt or stdin), or prints a one-time invitation link to set it."""
    password = None if args.invite else _new_password(args)
    with session_scope(engine(settings)) as s:
        company, user = _company_user(s, args)
        if password is None:
            token = passwords.create_invitation(s, user)
        else:
            passwords.set_password(s, user, password)
    if password is None:
        days = passwords.INVITATION_TTL.days
        print(f"{settings.base_url}/console/invitation/{token}\n"
              f"Give this link to {args.name}: it sets their password once, within {days} days, and is shown only now.")
    else:
        print(f"password set for {args.name}; their console sessions have ended")


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        try:
            out = identity.issue_api_key(s, hasher(settings), company, args.user)
        except NotFound:
            raise CliError(f"user {args.user!r} does not exist in {company.slug!r}") from None
    if args.json:
        print(json.dumps(out))
    else:
        print(f"company_slug: {out['company_slug']}\napi_key:      {out['api_key']}\n"
              f"api_secret:   {out['api_secret']}\nThe secret is shown only now; store it safely.")


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        try:
            identity.revoke_api_key(s, args.key_id)
        except NotFound:
            raise CliError(f"API key {args.key_id!r} does not exist") from None
    print(f"revoked {args.key_id}")


def register(sub: Subparsers) -> None:
    companies = group(sub, "companies", "Companies (tenants)")
    c = add(companies, "create", cmd_companies_create, "Create a company")
    c.add_argument("slug", help="kebab-case slug, e.g. acme")
    c.add_argument("--name", help="display name (default: the slug)")
    lim = add(companies, "limits", cmd_companies_limits,
              "Show a company's execute limits, or set its own (they replace the DATAAPI_RATE_LIMIT_* defaults)")
    lim.add_argument("company")
    lim.add_argument("--requests-per-minute", type=int, metavar="N", help="the company's, all keys together (0: none)")
    lim.add_argument("--key-requests-per-minute", type=int, metavar="N", help="each API key's (0: none)")
    lim.add_argument("--sync-concurrency", type=int, metavar="N", help="sync executions in flight per API process")
    lim.add_argument("--reset", action="store_true", help="back to the defaults (before any value given)")

    users = group(sub, "users", "Users of a company")
    u = add(users, "create", cmd_users_create, "Create a user")
    u.add_argument("--company", required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--policy", action="append", choices=sorted(POLICIES), help="managed policy (repeatable)")
    u.add_argument("--kind", choices=list(UserKind), default=UserKind.INTEGRATION)
    u.add_argument("--human", action="store_true", help="a person who logs in to the console (same as --kind human)")
    sp = add(users, "set-password", cmd_users_set_password,
             "Set a human user's password (prompted), or print a one-time invitation link")
    sp.add_argument("--company", required=True)
    sp.add_argument("--name", required=True)
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    how.add_argument("--invite", action="store_true", help="print a link with which the user sets it themselves")
    for name, disabled in (("disable", True), ("enable", False)):
        d = add(users, name, functools.partial(cmd_users_disable, disabled=disabled), f"{name.capitalize()} a user")
        d.add_argument("--company", required=True)
        d.add_argument("--name", required=True)

    keys = group(sub, "keys", "API keys of integration users")
    k = add(keys, "create", cmd_keys_create, "Create an API key (the secret is printed once)")
    k.add_argument("--company", required=True)
    k.add_argument("--user", required=True)
    k.add_argument("--json", action="store_true", help="print exactly {company_slug, api_key, api_secret}")
    r = add(keys, "revoke", cmd_keys_revoke, "Revoke an API key")
    r.add_argument("key_id")
