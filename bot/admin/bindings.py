"""The customer-binding admin API, behind the same bearer BOT_ADMIN_TOKEN as /api/kb.

    GET    /api/bindings?platform=&app=&user=&customer=   bindings matching every filter
    POST   /api/bindings                                  JSON {platform, app, user_id, customer_id}
    DELETE /api/bindings/{platform}/{app}/{user_id}       remove one binding: 200, or 404
    POST   /api/bindings/import                           CSV (multipart file or text/csv body)

A binding says which customer account a platform user is; the order tools only ever show
that account's orders (bot/tools/orders.py). Database work runs in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import BodyPartReader, web

from bot.admin.common import error as _error
from bot.admin.common import parts_of
from bot.domain import DEFAULT_APP
from bot.orders.bindings import BindingImportError, BindingSource, BindingStore

log = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 1 << 20
MAX_LIST = 500
MAX_OFFSET = 1_000_000  # paging past this is a query, not a list: narrow the filters
MAX_SEARCH = 64  # a part of a user or customer id


def _store(request: web.Request) -> BindingStore:
    return parts_of(request).bindings


async def list_bindings(request: web.Request) -> web.Response:
    q = request.query
    try:
        limit = max(1, min(int(q.get("limit", "100")), MAX_LIST))
        offset = max(0, min(int(q.get("offset", "0")), MAX_OFFSET))
    except ValueError:
        return _error(400, "limit and offset must be integers")
    search = q.get("q", "").strip()
    if len(search) > MAX_SEARCH:
        return _error(400, f"q is at most {MAX_SEARCH} characters")
    store = _store(request)
    found = await asyncio.to_thread(
        lambda: store.list(
            platform=q.get("platform", ""),
            app=q.get("app", ""),
            user_id=q.get("user", ""),
            customer_id=q.get("customer", ""),
            search=search,
            limit=limit,
            offset=offset,
        )
    )
    return web.json_response({"bindings": [b.to_json() for b in found]})


async def create(request: web.Request) -> web.Response:
    try:
        body: Any = await request.json()
    except ValueError:
        return _error(400, "send a JSON object")
    if not isinstance(body, dict):
        return _error(400, "send a JSON object")
    values = {k: body.get(k, "") for k in ("platform", "app", "user_id", "customer_id")}
    if not all(isinstance(v, str) for v in values.values()):
        return _error(400, "platform, app, user_id and customer_id must be strings")
    store = _store(request)
    try:
        binding = await asyncio.to_thread(
            store.bind,
            values["platform"],
            values["app"] or DEFAULT_APP,
            values["user_id"],
            values["customer_id"],
            BindingSource.ADMIN,
        )
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response({"binding": binding.to_json()}, status=201)


async def delete(request: web.Request) -> web.Response:
    m = request.match_info
    store = _store(request)
    removed = await asyncio.to_thread(store.unbind, m["platform"], m["app"], m["user_id"])
    if not removed:
        return _error(404, "no such binding")
    log.info("admin API: removed a %s/%s binding", m["platform"], m["app"])
    return web.json_response({"deleted": True})


async def import_csv(request: web.Request) -> web.Response:
    try:
        text = await _csv_text(request)
    except UnicodeDecodeError:
        return _error(400, "the CSV must be UTF-8")
    if text is None:
        return _error(413, f"CSV larger than {MAX_IMPORT_BYTES} bytes")
    if not text.strip():
        return _error(400, "empty CSV: columns platform, app, user_id, customer_id")
    store = _store(request)
    try:
        count = await asyncio.to_thread(store.import_csv, text)
    except (BindingImportError, ValueError) as exc:
        return _error(400, str(exc))
    log.info("admin API: imported %d bindings", count)
    return web.json_response({"imported": count})


async def _csv_text(request: web.Request) -> str | None:
    """The uploaded CSV as text (the first file part, or the whole body); None: too large."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.filename:
                data = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    data += chunk
                    if len(data) > MAX_IMPORT_BYTES:
                        return None
                return bytes(data).decode("utf-8-sig")
        return ""
    body = await request.read()  # also capped by the app's client_max_size
    if len(body) > MAX_IMPORT_BYTES:
        return None
    return body.decode("utf-8-sig")
