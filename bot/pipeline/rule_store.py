"""The database's auto-reply rules: list, add, change, switch on or off, remove.

One code path for the admin API (bot/admin/autoreply.py) and the console's rules page
(bot/console/pages/rules.py): a rule is validated by `autoreply.parse_rule` only, and every
change is followed by `bump`, which moves the Redis version key the workers compare on
every message (bot/pipeline/autoreply.py), so they use the change from their next message.
The functions here are blocking: call them in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot import keys
from bot.db.models import AutoReplyRule, AutoReplyRuleOff, aware
from bot.pipeline.autoreply import RULE_FIELDS, Rule, RuleError, parse_rule, rule_json


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A database rule as the API and the console show it."""

    id: int
    match: str
    pattern: str
    reply: str
    platform: str
    app: str
    priority: int
    enabled: bool
    created_at: datetime

    def fields(self) -> dict[str, Any]:
        """What an operator sets: the rule's own fields and whether it is on (audit values)."""
        return {**rule_json(self), "enabled": self.enabled}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields(), "created_at": self.created_at.isoformat()}


def parse_form(data: Mapping[str, str]) -> Rule:
    """A rule from form fields (all text): the priority read as a number, then `parse_rule`."""
    fields: dict[str, Any] = {name: data.get(name, "") for name in RULE_FIELDS}
    raw = fields["priority"].strip()
    try:
        fields["priority"] = int(raw) if raw else 100
    except ValueError:
        raise RuleError("priority must be an integer", "priority") from None
    return parse_rule(fields)


def rows(engine: Engine) -> list[StoredRule]:
    """Every database rule, switched off or not, in id order."""
    with Session(engine) as session:
        off = set(session.exec(select(AutoReplyRuleOff.rule_id)))
        found = session.exec(select(AutoReplyRule).order_by(col(AutoReplyRule.id)))
        return [_stored(row, row.id not in off) for row in found]


def get(engine: Engine, rule_id: int) -> StoredRule | None:
    with Session(engine) as session:
        row = session.get(AutoReplyRule, rule_id)
        return _stored(row, _is_on(session, rule_id)) if row is not None else None


def add(engine: Engine, rule: Rule, *, enabled: bool = True) -> StoredRule:
    with Session(engine) as session:
        row = AutoReplyRule(**rule_json(rule))
        session.add(row)
        session.flush()  # the id, for the switch
        if not enabled and row.id is not None:
            session.add(AutoReplyRuleOff(rule_id=row.id))
        session.commit()
        session.refresh(row)
        return _stored(row, enabled)


def change(
    engine: Engine, rule_id: int, rule: Rule, *, enabled: bool | None = None
) -> tuple[StoredRule, StoredRule] | None:
    """Replace the rule's fields (and switch it when `enabled` is given): (before, after),
    or None when there is no such rule."""
    with Session(engine) as session:
        row = session.get(AutoReplyRule, rule_id)
        if row is None:
            return None
        was_on = _is_on(session, rule_id)
        before = _stored(row, was_on)
        for name, value in rule_json(rule).items():
            setattr(row, name, value)
        session.add(row)
        now_on = was_on if enabled is None else enabled
        _set_switch(session, rule_id, was_on, now_on)
        session.commit()
        session.refresh(row)
        return before, _stored(row, now_on)


def switch(engine: Engine, rule_id: int, enabled: bool) -> tuple[StoredRule, StoredRule] | None:
    """Switch a rule on or off: (before, after), or None when there is no such rule."""
    with Session(engine) as session:
        row = session.get(AutoReplyRule, rule_id)
        if row is None:
            return None
        was_on = _is_on(session, rule_id)
        _set_switch(session, rule_id, was_on, enabled)
        session.commit()
        session.refresh(row)
        return _stored(row, was_on), _stored(row, enabled)


def remove(engine: Engine, rule_id: int) -> StoredRule | None:
    """Delete a rule: what it was, or None when there is no such rule."""
    with Session(engine) as session:
        row = session.get(AutoReplyRule, rule_id)
        if row is None:
            return None
        gone = _stored(row, _is_on(session, rule_id))
        off = session.get(AutoReplyRuleOff, rule_id)
        if off is not None:
            session.delete(off)
            session.flush()  # the switch row refers to the rule: it goes first
        session.delete(row)
        session.commit()
        return gone


async def bump(redis: aioredis.Redis) -> None:
    """Tell every worker the rules changed: they re-read them at their next message."""
    await redis.incr(keys.AUTOREPLY_VERSION)


def _is_on(session: Session, rule_id: int) -> bool:
    return session.get(AutoReplyRuleOff, rule_id) is None


def _set_switch(session: Session, rule_id: int, was_on: bool, now_on: bool) -> None:
    if was_on and not now_on:
        session.add(AutoReplyRuleOff(rule_id=rule_id))
    elif now_on and not was_on:
        off = session.get(AutoReplyRuleOff, rule_id)
        if off is not None:
            session.delete(off)


def _stored(row: AutoReplyRule, enabled: bool) -> StoredRule:
    return StoredRule(
        id=row.id or 0,
        match=row.match,
        pattern=row.pattern,
        reply=row.reply,
        platform=row.platform,
        app=row.app,
        priority=row.priority,
        enabled=enabled,
        created_at=aware(row.created_at),
    )
