"""The admin API's one token check and error shape, shared by every `/api/...` module.

Bearer `BOT_ADMIN_TOKEN`, compared in constant time. With no token configured the admin
API is off (503), never open.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from bot.admin.common import Handler, error, settings_of
from bot.settings import Settings

log = logging.getLogger(__name__)


def token_ok(request: web.Request, settings: Settings) -> bool | None:
    """True/False for a good/bad bearer token; None when no admin token is configured."""
    expected = settings.core.admin_token.get_secret_value()
    if not expected:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


def refusal(request: web.Request, settings: Settings) -> web.Response | None:
    """The response refusing `request` (503 admin off, 401 bad token), or None to go on."""
    ok = token_ok(request, settings)
    if ok is None:
        return error(503, "admin API disabled: set BOT_ADMIN_TOKEN")
    if not ok:
        log.warning("admin API: refused %s %s: bad or missing token", request.method, request.path)
        return error(401, "unauthorized", **{"WWW-Authenticate": "Bearer"})
    return None


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An aiohttp middleware that lets only token holders through."""
    refused = refusal(request, settings_of(request))
    return refused if refused is not None else await handler(request)


def guard(handler: Handler) -> Handler:
    """`handler` for token holders only (for routes on the root app)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = refusal(request, settings_of(request))
        return refused if refused is not None else await handler(request)

    return guarded
