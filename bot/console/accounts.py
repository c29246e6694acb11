"""Console accounts: usernames, argon2 password hashes, roles, disabling.

Three roles: **admin** (everything, accounts, the audit log), **editor** (knowledge and
rules), **agent** (the handoff inbox and conversations). Everything here is synchronous
(the web process calls it in a thread, the CLI directly). Passwords are hashed with
argon2id (argon2-cffi's defaults); a hash made with older parameters is upgraded at the
next successful sign-in.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.db.models import ConsoleAccount

ADMIN, EDITOR, AGENT = "admin", "editor", "agent"
ROLES = (ADMIN, EDITOR, AGENT)
MIN_PASSWORD = 8
MAX_PASSWORD = 256  # argon2 takes any length; a bound keeps a sign-in request cheap
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}")

_hasher = PasswordHasher()
# Verified when the username does not exist, so a wrong name costs as much as a wrong
# password and the response time does not tell which names exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says why."""


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise AccountError(
            "a username is 2-64 characters: letters, digits and _ . @ -, starting with a "
            "letter or digit"
        )
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"the role must be one of {', '.join(ROLES)}")
    return role


def add(engine: Engine, username: str, password: str, role: str) -> ConsoleAccount:
    """Create an account; AccountError when the name is taken or a field is invalid."""
    account = ConsoleAccount(
        username=check_username(username),
        password_hash=_hasher.hash(check_password(password)),
        role=check_role(role),
    )
    with Session(engine) as session:
        session.add(account)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            raise AccountError(f"an account named {username!r} already exists") from None
        session.refresh(account)
        return account


def get(engine: Engine, username: str) -> ConsoleAccount | None:
    with Session(engine) as session:
        return session.exec(
            select(ConsoleAccount).where(ConsoleAccount.username == username)
        ).first()


def get_by_id(engine: Engine, account_id: int) -> ConsoleAccount | None:
    with Session(engine) as session:
        return session.get(ConsoleAccount, account_id)


def all_accounts(engine: Engine) -> list[ConsoleAccount]:
    with Session(engine) as session:
        return list(session.exec(select(ConsoleAccount).order_by(col(ConsoleAccount.username))))


def set_disabled(engine: Engine, username: str, disabled: bool) -> ConsoleAccount:
    """Disable or enable an account; its sessions end at their next request."""
    with Session(engine) as session:
        account = _existing(session, username)
        if disabled and account.role == ADMIN and not account.disabled:
            others = session.exec(
                select(ConsoleAccount).where(
                    ConsoleAccount.role == ADMIN,
                    col(ConsoleAccount.disabled).is_(False),
                    ConsoleAccount.username != username,
                )
            ).first()
            if others is None:
                raise AccountError("this is the last active admin: add another admin first")
        account.disabled = disabled
        account.updated_at = datetime.now(UTC)
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def set_password(engine: Engine, username: str, password: str) -> ConsoleAccount:
    """A new password; sessions that began before it end at their next request."""
    hashed = _hasher.hash(check_password(password))
    with Session(engine) as session:
        account = _existing(session, username)
        account.password_hash = hashed
        account.password_changed_at = account.updated_at = datetime.now(UTC)
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def authenticate(engine: Engine, username: str, password: str) -> ConsoleAccount | None:
    """The account when the name and password match and it is enabled, else None."""
    account = get(engine, username) if _USERNAME.fullmatch(username) else None
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None or account.disabled:
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        with Session(engine) as session:
            fresh = session.get(ConsoleAccount, account.id)
            if fresh is not None:
                fresh.password_hash = _hasher.hash(password)
                session.add(fresh)
                session.commit()
    return account


def _existing(session: Session, username: str) -> ConsoleAccount:
    account = session.exec(
        select(ConsoleAccount).where(ConsoleAccount.username == username)
    ).first()
    if account is None:
        raise AccountError(f"no account named {username!r}")
    return account
