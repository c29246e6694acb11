"""The dashboard (admins and editors): how much the bot answers, how, how fast, and what the
models cost in tokens (and money, at the configured prices), over the last days; and the
model breakers of every worker now. Charts are drawn by the vendored ECharts from the
figures embedded in the page; the same figures are in tables for everyone else."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of, redis_of, settings_of
from bot.agent.trace import OUTCOMES
from bot.console import i18n
from bot.console.accounts import ADMIN, EDITOR
from bot.console.guard import page
from bot.console.keys import LANG
from bot.console.render import render
from bot.db import stats
from bot.llm import board
from bot.llm.factory import backend_names
from bot.settings import DashScopeSettings, Settings, VLLMSettings
from bot.settings.models import estimated_cost

PERIODS = (1, 7, 14, 30, 90)
DEFAULT_DAYS = 14


@page(ADMIN, EDITOR)
async def dashboard(request: web.Request) -> web.StreamResponse:
    try:
        days = int(request.query.get("days", DEFAULT_DAYS))
    except ValueError:
        days = DEFAULT_DAYS
    days = days if days in PERIODS else DEFAULT_DAYS
    settings = settings_of(request)
    figures = await asyncio.to_thread(_figures, engine_of(request), days)
    costs = {m["backend"]: _cost(settings, m) for m in figures.models}
    breakers = await board.read(redis_of(request), backend_names(settings), now=time.time())
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
            "costs": costs,
            "show_cost": any(c is not None for c in costs.values()),
            "breakers": [_breaker_row(b) for b in breakers],
        },
    )


def _cost(settings: Settings, row: dict[str, Any]) -> float | None:
    """A backend's estimated cost over the period; None when it has no price (or is no model)."""
    priced: dict[str, VLLMSettings | DashScopeSettings] = {
        "vllm": settings.vllm,
        "dashscope": settings.dashscope,
    }
    section = priced.get(row["backend"])
    if section is None:
        return None
    return estimated_cost(section, row["prompt_tokens"], row["completion_tokens"])


def _breaker_row(found: board.BackendBreaker) -> dict[str, Any]:
    since = datetime.fromtimestamp(found.changed_at, UTC) if found.changed_at else None
    return {
        "backend": found.backend,
        "state": found.state,
        "since": since,
        "workers": found.workers,
        "not_closed": found.not_closed,
    }


def _figures(engine: Engine, days: int) -> stats.Dashboard:
    with Session(engine) as session:
        return stats.dashboard(session, days)
