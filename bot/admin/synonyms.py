"""The operator's synonyms under ``/api/kb/synonyms`` (scope ``knowledge``).

    GET    /api/kb/synonyms            every pair: {"synonyms": [{"variant", "standard"}]}
    POST   /api/kb/synonyms            {"variant": "扫地机", "standard": "扫地机器人"}: 201
    DELETE /api/kb/synonyms/{variant}  one pair: 200, or 404

A pair that cannot be stored is a 400 with the reason in one line (`knowledge.synonym_table`).
Workers pick a change up within a few seconds; nothing is re-indexed.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from sqlmodel import Session

from bot.admin.common import engine_of, error
from knowledge import synonym_table

log = logging.getLogger(__name__)


async def list_synonyms(request: web.Request) -> web.Response:
    engine = engine_of(request)

    def read() -> dict[str, str]:
        with Session(engine) as session:
            return synonym_table.load(session)

    pairs = await asyncio.to_thread(read)
    return web.json_response(
        {"synonyms": [{"variant": v, "standard": s} for v, s in pairs.items()]}
    )


async def create(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'send a JSON object: {"variant": ..., "standard": ...}')
    if not isinstance(body, dict):
        return error(400, 'send a JSON object: {"variant": ..., "standard": ...}')
    variant, standard = body.get("variant"), body.get("standard")
    if not isinstance(variant, str) or not isinstance(standard, str):
        return error(400, "variant and standard must both be strings")
    engine = engine_of(request)

    def add() -> tuple[str, str]:
        with Session(engine) as session:
            row = synonym_table.add(session, variant, standard)
            return row.variant, row.canonical

    try:
        stored_variant, stored_standard = await asyncio.to_thread(add)
    except synonym_table.SynonymError as exc:
        return error(400, str(exc))
    log.info("admin API: synonym %s=%s added", stored_variant, stored_standard)
    return web.json_response({"variant": stored_variant, "standard": stored_standard}, status=201)


async def delete(request: web.Request) -> web.Response:
    variant = request.match_info["variant"]
    engine = engine_of(request)

    def remove() -> tuple[str, str] | None:
        with Session(engine) as session:
            row = synonym_table.remove(session, variant)
            return (row.variant, row.canonical) if row is not None else None

    removed = await asyncio.to_thread(remove)
    if removed is None:
        return error(404, f"no synonym {variant!r}")
    log.info("admin API: synonym %s=%s removed", *removed)
    return web.json_response({"deleted": {"variant": removed[0], "standard": removed[1]}})
