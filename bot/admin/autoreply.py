"""The auto-reply rules admin API under ``/api/autoreply``, behind the bearer BOT_ADMIN_TOKEN.

    GET    /api/autoreply/rules        the database rules (with ids) and the file's rules
    POST   /api/autoreply/rules        one rule as JSON: 201 with its id; a bad rule is a 400
    DELETE /api/autoreply/rules/{id}   remove a database rule: 204, or 404

Every change bumps the Redis key ``autoreply:version``, so running workers use it from their
next message on (bot/pipeline/autoreply.py). Database work runs in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bot import keys
from bot.admin.common import error as _error
from bot.admin.common import redis_of, settings_of
from bot.db.engine import get_engine
from bot.db.models import AutoReplyRule
from bot.pipeline import autoreply
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


async def list_rules(request: web.Request) -> web.Response:
    settings = settings_of(request)
    rules = await asyncio.to_thread(_list, settings)
    current = await asyncio.to_thread(autoreply.current_rules, settings, None)
    from_file = [r.to_json() for r in current if r.key.startswith("file")]
    return web.json_response({"rules": rules, "file_rules": from_file})


async def create(request: web.Request) -> web.Response:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, f"a rule is at most {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body must be one rule as a JSON object")
    if not isinstance(data, dict):
        return _error(400, "body must be one rule as a JSON object")
    try:
        rule = autoreply.parse_rule(data)
    except autoreply.RuleError as exc:
        return _error(400, f"invalid rule: {exc}")
    row = await asyncio.to_thread(_insert, settings_of(request), rule)
    await _bump(request)
    log.info("autoreply rule %s added (%s)", row["id"], rule.match)
    return web.json_response({"rule": row}, status=201)


async def delete(request: web.Request) -> web.Response:
    raw = request.match_info["rule_id"]
    if not raw.isdigit():
        return _error(400, "rule id must be a number (file rules are edited in the file)")
    if not await asyncio.to_thread(_remove, settings_of(request), int(raw)):
        return _error(404, f"no rule {raw}")
    await _bump(request)
    log.info("autoreply rule %s deleted", raw)
    return web.Response(status=204)


async def _bump(request: web.Request) -> None:
    # Workers compare this version on every message and re-read the rules when it moved.
    await redis_of(request).incr(keys.AUTOREPLY_VERSION)


def _session(settings: Settings) -> Session:
    return Session(get_engine(settings.core.effective_database_url()))


def _row_json(row: AutoReplyRule) -> dict[str, Any]:
    return {"id": row.id, **autoreply.rule_json(row), "created_at": row.created_at.isoformat()}


def _list(settings: Settings) -> list[dict[str, Any]]:
    from sqlmodel import select

    with _session(settings) as session:
        rows = session.exec(select(AutoReplyRule).order_by(AutoReplyRule.id))  # type: ignore[arg-type]
        return [_row_json(row) for row in rows]


def _insert(settings: Settings, rule: autoreply.Rule) -> dict[str, Any]:
    with _session(settings) as session:
        row = AutoReplyRule(**rule.to_json())
        session.add(row)
        session.commit()
        session.refresh(row)
        return _row_json(row)


def _remove(settings: Settings, rule_id: int) -> bool:
    with _session(settings) as session:
        row = session.get(AutoReplyRule, rule_id)
        if row is None:
            return False
        session.delete(row)
        session.commit()
        return True
