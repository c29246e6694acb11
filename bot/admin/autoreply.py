"""The auto-reply rules admin API under ``/api/autoreply``, behind a token with the rules scope.

    GET    /api/autoreply/rules        the database rules (with ids) and the file's rules
    POST   /api/autoreply/rules        one rule as JSON: 201 with its id; a bad rule is a 400
    PUT    /api/autoreply/rules/{id}   replace a database rule's fields: 200, 400, or 404
    DELETE /api/autoreply/rules/{id}   remove a database rule: 204, or 404

A rule may carry ``"enabled": false`` (kept, not used). Storage and validation are
bot/pipeline/rule_store.py's, shared with the console's rules page; every change bumps the
Redis key ``autoreply:version``, so running workers use it from their next message on.
Database work runs in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bot.admin.common import engine_of, redis_of, settings_of
from bot.admin.common import error as _error
from bot.pipeline import autoreply, rule_store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


async def list_rules(request: web.Request) -> web.Response:
    settings = settings_of(request)
    rules = await asyncio.to_thread(rule_store.rows, engine_of(request))
    current = await asyncio.to_thread(autoreply.current_rules, settings, None)
    from_file = [r.to_json() for r in current if r.key.startswith("file")]
    return web.json_response({"rules": [r.to_json() for r in rules], "file_rules": from_file})


async def create(request: web.Request) -> web.Response:
    parsed = await _rule_of(request)
    if isinstance(parsed, web.Response):
        return parsed
    rule, enabled = parsed
    row = await asyncio.to_thread(
        rule_store.add, engine_of(request), rule, enabled=enabled is not False
    )
    await rule_store.bump(redis_of(request))
    log.info("autoreply rule %s added (%s)", row.id, rule.match)
    return web.json_response({"rule": row.to_json()}, status=201)


async def update(request: web.Request) -> web.Response:
    rule_id = _rule_id(request)
    if rule_id is None:
        return _error(400, "rule id must be a number (file rules are edited in the file)")
    parsed = await _rule_of(request)
    if isinstance(parsed, web.Response):
        return parsed
    rule, enabled = parsed
    changed = await asyncio.to_thread(
        rule_store.change, engine_of(request), rule_id, rule, enabled=enabled
    )
    if changed is None:
        return _error(404, f"no rule {rule_id}")
    await rule_store.bump(redis_of(request))
    log.info("autoreply rule %s changed", rule_id)
    return web.json_response({"rule": changed[1].to_json()})


async def delete(request: web.Request) -> web.Response:
    rule_id = _rule_id(request)
    if rule_id is None:
        return _error(400, "rule id must be a number (file rules are edited in the file)")
    if await asyncio.to_thread(rule_store.remove, engine_of(request), rule_id) is None:
        return _error(404, f"no rule {rule_id}")
    await rule_store.bump(redis_of(request))
    log.info("autoreply rule %s deleted", rule_id)
    return web.Response(status=204)


def _rule_id(request: web.Request) -> int | None:
    raw = request.match_info["rule_id"]
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


async def _rule_of(request: web.Request) -> tuple[autoreply.Rule, bool | None] | web.Response:
    """The body's rule and its "enabled" (None: not given), or the 400/413 to answer."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _error(413, f"a rule is at most {MAX_BODY_BYTES} bytes")
    try:
        data: Any = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body must be one rule as a JSON object")
    if not isinstance(data, dict):
        return _error(400, "body must be one rule as a JSON object")
    enabled = data.pop("enabled", None)
    if enabled is not None and not isinstance(enabled, bool):
        return _error(400, "invalid rule: enabled must be true or false")
    try:
        return autoreply.parse_rule(data), enabled
    except autoreply.RuleError as exc:
        return _error(400, f"invalid rule: {exc}")
