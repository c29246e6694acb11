"""``GET /api/usage?days=N``: model tokens per platform/app and the costliest conversations.

Behind the admin token like the rest of the admin API (bot/admin/knowledge.py passes its check in).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlmodel import Session

from bot.admin.common import settings_of
from bot.db import usage
from bot.db.engine import get_engine

DEFAULT_DAYS = 7
MAX_DAYS = 366


async def usage_report(request: web.Request) -> web.Response:
    raw = request.query.get("days", str(DEFAULT_DAYS))
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        return web.json_response(
            {"error": f"days must be a whole number from 1 to {MAX_DAYS}, got {raw!r}"},
            status=400,
        )
    url = settings_of(request).core.effective_database_url()
    return web.json_response(await asyncio.to_thread(_report, url, days))


def _report(url: str, days: int) -> dict[str, Any]:
    with Session(get_engine(url)) as session:
        return usage.report(session, days)
