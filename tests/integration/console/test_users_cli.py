"""`bot users` as an operator types it: the first admin, listing, disabling, a new password;
user errors are one line and an exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.console import accounts, audit
from bot.db.engine import get_engine
from tests.integration.conftest import REPO

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bot.db"


@pytest.fixture
def users(tmp_path: Path, db_url: str) -> Run:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "DATABASE_"))}
    env = {**keep, "PYTHONPATH": str(REPO), "DATABASE_URL": db_url, "COLUMNS": "200"}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "users", *args],
            env=env,
            cwd=tmp_path,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def test_first_admin_then_list_disable_and_reset(users: Run, db_url: str) -> None:
    empty = users("list")
    assert empty.returncode == 0
    assert "bot users add NAME --role admin" in empty.stdout
    added = users("add", "boss", "--role", "admin", "--password-stdin", stdin="s3cret-pass\n")
    assert added.returncode == 0, added.stderr
    assert "added boss (admin)" in added.stdout
    users("add", "wang", "--role", "agent", "--password-stdin", stdin="agent-pass-1\n")
    listed = users("list").stdout
    assert "boss" in listed
    assert "wang" in listed
    assert "agent" in listed
    assert "active" in listed
    engine = get_engine(db_url)
    assert accounts.authenticate(engine, "boss", "s3cret-pass") is not None
    assert users("disable", "wang").returncode == 0
    assert "disabled" in users("list").stdout
    assert accounts.authenticate(engine, "wang", "agent-pass-1") is None
    reset = users("reset-password", "boss", "--password-stdin", stdin="another-pass-2\n")
    assert reset.returncode == 0
    assert accounts.authenticate(engine, "boss", "another-pass-2") is not None
    assert accounts.authenticate(engine, "boss", "s3cret-pass") is None
    trail = [(e.actor, e.action, e.target) for e in reversed(audit.recent(engine))]
    assert trail == [
        ("cli", "account.add", "account:boss"),
        ("cli", "account.add", "account:wang"),
        ("cli", "account.disable", "account:wang"),
        ("cli", "account.reset_password", "account:boss"),
    ]
    # No password or hash ever lands in the audit log.
    assert not any(
        "pass" in (e.after + e.before).replace('"password"', "") for e in audit.recent(engine)
    )


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (
            ("add", "boss", "--role", "admin", "--password-stdin"),
            "short\n",
            1,
            "at least 8 characters",
        ),
        (
            ("add", "x", "--role", "admin", "--password-stdin"),
            "long enough 1\n",
            1,
            "a username is 2-64 characters",
        ),
        (("add", "boss", "--role", "admin"), "", 2, "use --password-stdin"),
        (("add", "boss", "--role", "admin", "--password-stdin"), "", 2, "no password"),
        (("disable", "ghost"), "", 1, "no account named 'ghost'"),
        (
            ("reset-password", "ghost", "--password-stdin"),
            "long enough 1\n",
            1,
            "no account named 'ghost'",
        ),
    ],
)
def test_user_errors_are_one_line(users: Run, args, stdin, code, message) -> None:
    result = users(*args, stdin=stdin)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_taken_name_and_the_last_admin(users: Run) -> None:
    users("add", "boss", "--role", "admin", "--password-stdin", stdin="s3cret-pass\n")
    again = users("add", "boss", "--role", "agent", "--password-stdin", stdin="s3cret-pass\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    last = users("disable", "boss")
    assert last.returncode == 1
    assert "last active admin" in last.stderr
