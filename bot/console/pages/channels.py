"""Channels and configuration (admins): each configured platform app with the webhook URL to
paste into the platform's console, when a customer last wrote and the last failed send; and
the effective configuration, read-only, secrets never shown."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.admin.common import engine_of, settings_of
from bot.console import config_view
from bot.console.accounts import ADMIN
from bot.console.guard import page
from bot.console.render import render
from bot.db import stats
from bot.domain import DEFAULT_APP
from bot.settings import Settings
from bot.settings import apps as appconfig

# Platforms whose messages can arrive over a long connection instead of a webhook.
_STREAMS = {"dingtalk", "feishu"}


@page(ADMIN)
async def channels(request: web.Request) -> web.StreamResponse:
    settings = settings_of(request)
    activity = await asyncio.to_thread(_activity, engine_of(request))
    return render(
        request,
        "channels.html",
        {
            "channels": _channels(settings, _base_url(request, settings), activity),
            "config": config_view.effective(settings),
            "public_url": settings.handoff.public_url,
        },
    )


def _channels(
    settings: Settings, base: str, activity: dict[tuple[str, str], stats.Activity]
) -> list[dict[str, Any]]:
    rows = []
    for platform, app, section in appconfig.configured(settings):
        path = f"/webhooks/{platform}" + ("" if app == DEFAULT_APP else f"/{app}")
        seen = activity.get((platform, app), stats.Activity())
        rows.append(
            {
                "platform": platform,
                "app": app,
                "webhook": base + path,
                "stream": platform in _STREAMS and bool(getattr(section, "stream", False)),
                "last_in": seen.last_in.isoformat() if seen.last_in else "",
                "last_error": seen.last_error,
                "last_error_at": seen.last_error_at.isoformat() if seen.last_error_at else "",
            }
        )
    return rows


def _base_url(request: web.Request, settings: Settings) -> str:
    """BOT_PUBLIC_URL when set (what the platforms reach), else this request's own origin."""
    configured = settings.handoff.public_url.rstrip("/")
    return configured or f"{request.scheme}://{request.host}"


def _activity(engine: Engine) -> dict[tuple[str, str], stats.Activity]:
    with Session(engine) as session:
        return stats.channel_activity(session)
