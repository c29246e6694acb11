"""The dashboard (admins and editors): how much the bot answers, how, how fast, and what the
models cost in tokens, over the last days. Charts are drawn by the vendored ECharts from
the figures embedded in the page; the same figures are in tables for everyone else."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of
from bot.agent.trace import OUTCOMES
from bot.console import i18n
from bot.console.accounts import ADMIN, EDITOR
from bot.console.guard import page
from bot.console.keys import LANG
from bot.console.render import render
from bot.db import stats

PERIODS = (1, 7, 14, 30, 90)
DEFAULT_DAYS = 14


@page(ADMIN, EDITOR)
async def dashboard(request: web.Request) -> web.StreamResponse:
    try:
        days = int(request.query.get("days", DEFAULT_DAYS))
    except ValueError:
        days = DEFAULT_DAYS
    days = days if days in PERIODS else DEFAULT_DAYS
    figures = await asyncio.to_thread(_figures, engine_of(request), days)
    t = i18n.translator(request[LANG])
    labels = {o: t("outcome." + o) for o in OUTCOMES}
    return render(
        request,
        "dashboard.html",
        {
            "d": figures,
            "days": days,
            "periods": PERIODS,
            "chart": {
                "days": figures.days,
                "per_day": figures.per_day,
                "outcomes": [
                    {"name": labels.get(k, k), "value": v} for k, v in figures.outcomes.items()
                ],
                "words": {"messages": t("dash.messages")},
            },
            "outcome_labels": labels,
        },
    )


def _figures(engine: Engine, days: int) -> stats.Dashboard:
    with Session(engine) as session:
        return stats.dashboard(session, days)
