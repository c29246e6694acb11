"""Channels and configuration (admins): each configured platform app with the webhook URL to
paste into the platform's console, when a customer last wrote and the last failed send, and
a button that asks the platform for an access token once (do the app's credentials work?);
and the effective configuration, read-only, secrets never shown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.client import ApiClient
from bot.admin.common import engine_of, settings_of
from bot.console import config_view, i18n
from bot.console.accounts import ADMIN
from bot.console.guard import form, lang, page, refusal
from bot.console.render import render
from bot.db import stats
from bot.domain import DEFAULT_APP
from bot.errors import BotError
from bot.settings import Settings
from bot.settings import apps as appconfig
from bot.web.state import ADAPTERS

log = logging.getLogger(__name__)

# Platforms whose messages can arrive over a long connection instead of a webhook.
_STREAMS = {"dingtalk", "feishu"}


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What the platform answered when asked for the app's access token."""

    ok: bool
    text: str  # the platform's error (with its errcode), or how long the token lives


@page(ADMIN)
async def channels(request: web.Request) -> web.StreamResponse:
    return await _page(request, {})


@page(ADMIN)
async def check_token(request: web.Request) -> web.StreamResponse:
    """Ask the platform's token endpoint once, through the app's own client and timeout."""
    data = await form(request)
    key = (data.get("platform", ""), data.get("app", ""))
    client = request.config_dict[ADAPTERS].get(key)
    if not isinstance(client, ApiClient):
        return refusal(request, 404, "notfound.title", "ch.no_app")
    result = await ask_token(client)
    t = i18n.translator(lang(request))
    name = key[0] if key[1] == DEFAULT_APP else f"{key[0]}/{key[1]}"
    said = (
        {"notice": t("ch.token_ok_notice", name=name, text=result.text)}
        if result.ok
        else {"error": t("ch.token_bad_notice", name=name, text=result.text)}
    )
    return await _page(request, {key: result}, **said)


async def ask_token(client: ApiClient) -> TokenCheck:
    """One uncached token request (the cache would answer without asking the platform).

    Every token endpoint we call answers the current token or a new one without revoking
    the one the workers hold (WeChat's stable_token without force_refresh included).
    """
    try:
        async with aiohttp.ClientSession() as http:
            _token, expires_in_s = await client.fetch_token(http, force=False)
    except BotError as exc:
        log.warning("token check of %s %s failed: %s", client.platform, client.app, exc)
        return TokenCheck(False, str(exc))
    return TokenCheck(True, f"{expires_in_s:.0f}")


async def _page(
    request: web.Request, checks: dict[tuple[str, str], TokenCheck], **said: str
) -> web.StreamResponse:
    settings = settings_of(request)
    activity = await asyncio.to_thread(_activity, engine_of(request))
    rows = _channels(settings, _base_url(request, settings), activity)
    for row in rows:
        row["check"] = checks.get((row["platform"], row["app"]))
    return render(
        request,
        "channels.html",
        {
            "channels": rows,
            "config": config_view.effective(settings),
            "public_url": settings.handoff.public_url,
            **said,
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
