"""The audit log: who did what to what, when, with the state before and after.

Written for every change an operator makes, in the console or with `bot users`; read by
admins on /console/audit. Values are small JSON objects of the fields that changed, never
a secret (no password or hash is ever written here).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.db.models import AuditEntry

MAX_VALUE_CHARS = 4000


def record(
    engine: Engine,
    actor: str,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    address: str = "",
) -> None:
    entry = AuditEntry(
        actor=actor[:128],
        action=action[:64],
        target=target[:255],
        before=_json(before),
        after=_json(after),
        address=address[:64],
    )
    with Session(engine) as session:
        session.add(entry)
        session.commit()


def recent(engine: Engine, *, limit: int = 200, actor: str = "") -> list[AuditEntry]:
    """The newest entries first, optionally of one actor."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    with Session(engine) as session:
        return list(session.exec(query))


def _json(value: dict[str, Any] | None) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text[:MAX_VALUE_CHARS]
