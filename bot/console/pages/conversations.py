"""The conversation list (every role): filters by channel, app, date and answer kind, and the
same selection as a CSV file (audited: it carries customers' words)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of
from bot.agent.trace import OUTCOMES
from bot.console import i18n
from bot.console.accounts import ROLES
from bot.console.guard import page
from bot.console.keys import LANG
from bot.console.pages.common import audit_action
from bot.console.render import render
from bot.db import turns
from bot.domain import Platform
from bot.handoff import views
from knowledge import faq_sheet

LIST_LIMIT = 200
_APP = re.compile(r"^[\w.-]{1,64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PLATFORMS = tuple(p.value for p in Platform)


class BadFilter(ValueError):
    """A filter value the list cannot use (the page says which)."""


@page(*ROLES)
async def conversations(request: web.Request) -> web.StreamResponse:
    t = i18n.translator(request[LANG])
    try:
        filters = _filters(request.query)
    except BadFilter:
        return _page(request, [], {}, error=t("filter.bad_date"), status=400)
    rows = await asyncio.to_thread(_rows, engine_of(request), filters)
    return _page(request, rows, dict(request.query))


@page(*ROLES)
async def export(request: web.Request) -> web.StreamResponse:
    try:
        filters = _filters(request.query)
    except BadFilter:
        t = i18n.translator(request[LANG])
        return _page(request, [], {}, error=t("filter.bad_date"), status=400)
    body, count = await asyncio.to_thread(_csv, engine_of(request), filters)
    chosen = {k: v for k, v in request.query.items() if v and k in _KEYS}
    await audit_action(
        request, "conversations.export", "conversations", None, {**chosen, "rows": count}
    )
    stamp = datetime.now().astimezone().strftime("%Y%m%d-%H%M")
    return web.Response(
        body=body,
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="conversations-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _page(
    request: web.Request,
    rows: list[dict[str, Any]],
    chosen: dict[str, str],
    *,
    error: str = "",
    status: int = 200,
) -> web.Response:
    query = urlencode({k: v for k, v in chosen.items() if v and k in _KEYS})
    return render(
        request,
        "conversations.html",
        {
            "rows": rows,
            "chosen": chosen,
            "platforms": PLATFORMS,
            "outcomes": OUTCOMES,
            "export_query": query,
            "error": error,
        },
        status=status,
    )


_KEYS = ("platform", "app", "outcome", "since", "until")


def _filters(query: Any) -> turns.Filters:
    """The filters of the query string; unknown values are ignored, bad dates refused."""
    platform = query.get("platform", "")
    app = query.get("app", "").strip()
    outcome = query.get("outcome", "")
    return turns.Filters(
        platform=platform if platform in PLATFORMS else "",
        app=app if _APP.fullmatch(app) else "",
        outcome=outcome if outcome in OUTCOMES else "",
        since=_day(query.get("since", "")),
        until=_day(query.get("until", ""), next_day=True),
    )


def _day(value: str, *, next_day: bool = False) -> datetime | None:
    """A YYYY-MM-DD date as the start of that day (or of the next) in the server's zone."""
    if not value:
        return None
    if not _DATE.fullmatch(value):
        raise BadFilter(value)
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BadFilter(value) from exc
    start = datetime.combine(day, time()).astimezone()
    return start + timedelta(days=1) if next_day else start


def _rows(engine: Engine, filters: turns.Filters) -> list[dict[str, Any]]:
    with Session(engine) as session:
        found = turns.conversations(session, filters, limit=LIST_LIMIT)
        return [views.conv_json(c) for c in found]


def _csv(engine: Engine, filters: turns.Filters) -> tuple[bytes, int]:
    out = io.StringIO()
    out.write("\ufeff")  # Excel reads a UTF-8 file as such only with a BOM
    writer = csv.DictWriter(out, fieldnames=turns.EXPORT_COLUMNS)
    writer.writeheader()
    count = 0
    with Session(engine) as session:
        for row in turns.export_rows(session, filters):
            writer.writerow({k: _cell(v) for k, v in row.items()})
            count += 1
    return out.getvalue().encode("utf-8"), count


def _cell(value: Any) -> Any:
    return faq_sheet.formula_safe(value) if isinstance(value, str) else value
