"""Companies, their users and the users' API keys (the same services as the Admin API)."""

from __future__ import annotations

import argparse
import functools
import json

from cli.common import CliError, Subparsers, add, engine, group, hasher
from dataapi.db import session_scope
from dataapi.errors import NotFound
from dataapi.identity import service as identity
from dataapi.identity.policies import POLICIES
from dataapi.settings import Settings
from dataapi.statuses import UserKind


def cmd_companies_create(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.create_company(s, args.slug, args.name)
        print(f"created company {company.slug}")


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        user = identity.create_user(s, company, args.name, args.policy or [], kind=args.kind)
        policies = ", ".join(args.policy or []) or "no policy"
        print(f"created {user.kind} user {user.name} in {company.slug} with {policies}")


def cmd_users_disable(args: argparse.Namespace, settings: Settings, disabled: bool = True) -> None:
    with session_scope(engine(settings)) as s:
        company = identity.require_company(s, args.company)
        try:
            user = identity.require_user(s, company, args.name)
        except NotFound:
            raise CliError(f"user {args.name!r} does not exist in {company.slug!r}") from None
        identity.set_user_disabled(s, user, disabled)
        print(f"user {user.name} {'disabled' if disabled else 'enabled'}")


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

    users = group(sub, "users", "Users of a company")
    u = add(users, "create", cmd_users_create, "Create a user")
    u.add_argument("--company", required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--policy", action="append", choices=sorted(POLICIES), help="managed policy (repeatable)")
    u.add_argument("--kind", choices=list(UserKind), default=UserKind.INTEGRATION)
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
