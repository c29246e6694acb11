"""`bot users add|list|disable|enable|reset-password`: console accounts from the shell.

The way to create the first admin. A password is asked for twice at the terminal, or read
from the first line of standard input with `--password-stdin` (for scripts); it is never
an argument (arguments end up in shell history and `ps`). Every change is written to the
audit log with the actor `cli`.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from bot.settings import Settings

ACTOR = "cli"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    users = sub.add_parser("users", help="console accounts: add, list, disable, reset-password")
    actions = users.add_subparsers(dest="users_command", required=True)
    add = actions.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=["admin", "editor", "agent"], required=True)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    actions.add_parser("list", help="every account with its role and status")
    for name, text in (
        ("disable", "stop an account (its sessions end)"),
        ("enable", "allow again"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("username")
    reset = actions.add_parser("reset-password", help="a new password (its sessions end)")
    reset.add_argument("username")
    reset.add_argument("--password-stdin", action="store_true", help="read it from stdin")


def cmd_users(args: argparse.Namespace) -> int:
    from bot.console import accounts, audit
    from bot.db.engine import get_engine

    engine = get_engine(Settings.load().core.effective_database_url())
    try:
        if args.users_command == "list":
            return _list(accounts.all_accounts(engine))
        if args.users_command == "add":
            accounts.check_username(args.username)
            password = _password(args.password_stdin)
            account = accounts.add(engine, args.username, password, args.role)
            audit.record(
                engine,
                ACTOR,
                "account.add",
                f"account:{account.username}",
                after={"role": account.role, "disabled": False},
            )
            print(f"added {account.username} ({account.role}); sign in at /console/")
            return 0
        if args.users_command in ("disable", "enable"):
            disabled = args.users_command == "disable"
            account = accounts.set_disabled(engine, args.username, disabled)
            audit.record(
                engine,
                ACTOR,
                f"account.{args.users_command}",
                f"account:{account.username}",
                before={"disabled": not disabled},
                after={"disabled": disabled},
            )
            print(f"{account.username}: {'disabled' if disabled else 'enabled'}")
            return 0
        if args.users_command == "reset-password":
            if accounts.get(engine, args.username) is None:
                raise accounts.AccountError(f"no account named {args.username!r}")
            account = accounts.set_password(engine, args.username, _password(args.password_stdin))
            audit.record(
                engine,
                ACTOR,
                "account.reset_password",
                f"account:{account.username}",
                after={"password": "changed"},
            )
            print(f"{account.username}: password changed; their sessions have ended")
            return 0
    except accounts.AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except _NoPassword as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.users_command)


class _NoPassword(Exception):
    pass


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise _NoPassword("no password on standard input")
        return line
    if not sys.stdin.isatty():
        raise _NoPassword("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise _NoPassword("the two passwords differ; nothing changed")
    return first


def _list(found: list) -> int:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    if not found:
        print("no accounts yet: bot users add NAME --role admin")
        return 0
    table = Table("username", "role", "status", "created")
    for account in found:
        table.add_row(
            account.username,
            account.role,
            "disabled" if account.disabled else "active",
            account.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)
    return 0
