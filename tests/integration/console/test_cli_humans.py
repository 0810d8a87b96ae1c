"""``dataapi users create --human`` and ``dataapi users set-password`` (stdin, or a one-time invitation link), and
``dataapi users disable`` ending a person's console sessions, through the command's ``main``."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass

import pytest

from cli.main import main
from dataapi.db import make_engine, session_scope, upgrade
from dataapi.identity import passwords, sessions
from dataapi.identity import service as identity
from dataapi.settings import get_settings


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``run(*args)``: the ``dataapi`` command's ``main`` on a store of the test's own, its exit code and output."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    monkeypatch.setenv("DATAAPI_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DATAAPI_DATABASE_URL", url)
    get_settings.cache_clear()

    def run(*args: str, stdin: str = "") -> Ran:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    engine = make_engine(url)
    yield run, engine
    engine.dispose()
    get_settings.cache_clear()


def test_a_person_gets_a_password_or_an_invitation(cli):
    run, engine = cli
    assert run("companies", "create", "acme").returncode == 0
    created = run("users", "create", "--company", "acme", "--name", "ana", "--human", "--policy",
                  "VisualizationManager")
    assert created.returncode == 0 and "created human user ana" in created.stdout
    r = run("users", "set-password", "--company", "acme", "--name", "ana", "--password-stdin",
            stdin="a long password 1\n")
    assert r.returncode == 0, r.stderr
    with session_scope(engine) as s:
        principal = passwords.authenticate_password(s, "acme", "ana", "a long password 1")
        assert principal.policies == ["VisualizationManager"]
        token = sessions.open_session(s, principal, "cli-test", 3600)

    short = run("users", "set-password", "--company", "acme", "--name", "ana", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "10 to 1024 characters" in short.stderr

    invite = run("users", "set-password", "--company", "acme", "--name", "ana", "--invite")
    assert invite.returncode == 0
    link = re.search(r"/console/invitation/([\w-]+)", invite.stdout).group(1)
    with session_scope(engine) as s:
        assert passwords.invited_user(s, link).name == "ana"
        assert sessions.find_session(s, token, 3600) is not None  # an invitation alone ends nothing

    assert run("users", "disable", "--company", "acme", "--name", "ana").returncode == 0
    with session_scope(engine) as s:
        assert sessions.find_session(s, token, 3600) is None
        with pytest.raises(identity.AuthFailed):
            passwords.authenticate_password(s, "acme", "ana", "a long password 1")


def test_integration_users_get_no_password(cli):
    run, _ = cli
    run("companies", "create", "acme")
    run("users", "create", "--company", "acme", "--name", "erp", "--policy", "DataAPIConsumer")
    r = run("users", "set-password", "--company", "acme", "--name", "erp", "--password-stdin",
            stdin="a long password 1\n")
    assert r.returncode != 0 and "integration users use API keys" in r.stderr
    missing = run("users", "set-password", "--company", "acme", "--name", "nobody", "--invite")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
