"""The admin API's one token check and error shape, shared by every `/api/...` module.

A bearer token of `BOT_ADMIN_TOKEN` (every scope) or `BOT_ADMIN_TOKENS` (its own scopes,
bot/settings/tokens.py), compared in constant time. Each route needs one scope: a token
without it gets 403 naming the scope. With no token configured the admin API is off (503),
never open.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Middleware

from bot.admin.common import Handler, error, settings_of
from bot.settings import Settings
from bot.settings.tokens import ADMIN, AdminToken

log = logging.getLogger(__name__)


def _digest(value: str) -> bytes:
    # Equal-length digests: compare_digest then takes the same time whatever the lengths.
    # A header's bytes that are not UTF-8 arrive as surrogate escapes: back to those bytes
    # (a plain encode() would raise, a 500 for any caller).
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def holder(request: web.Request, settings: Settings) -> AdminToken | None:
    """The configured token the request's bearer token is, or None."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    presented = _digest(given.strip())
    found = None
    # Every token is compared, found or not: the time says nothing about which matched.
    for token in settings.core.admin_credentials():
        if hmac.compare_digest(presented, _digest(token.secret)) and found is None:
            found = token
    return found


def token_ok(request: web.Request, settings: Settings, scope: str = ADMIN) -> bool | None:
    """Whether the bearer token may reach `scope`; None when no admin token is configured."""
    if not settings.core.admin_credentials():
        return None
    found = holder(request, settings)
    return found is not None and found.allows(scope)


def refusal(request: web.Request, settings: Settings, scope: str) -> web.Response | None:
    """The response refusing `request` (503 admin off, 401 bad token, 403 lacking `scope`),
    or None to go on."""
    if not settings.core.admin_credentials():
        return error(503, "admin API disabled: set BOT_ADMIN_TOKEN or BOT_ADMIN_TOKENS")
    found = holder(request, settings)
    if found is None:
        log.warning("admin API: refused %s %s: bad or missing token", request.method, request.path)
        return error(401, "unauthorized", **{"WWW-Authenticate": "Bearer"})
    if not found.allows(scope):
        log.warning(
            "admin API: token %s refused %s %s: no scope %s",
            found.name,
            request.method,
            request.path,
            scope,
        )
        return web.json_response(
            {"error": f"forbidden: this token lacks the scope {scope!r}", "scope": scope},
            status=403,
        )
    return None


def middleware(scope: str) -> Middleware:
    """An aiohttp middleware that lets only holders of a token with `scope` through."""

    @web.middleware
    async def scoped(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = refusal(request, settings_of(request), scope)
        return refused if refused is not None else await handler(request)

    return scoped


def guard(scope: str, handler: Handler) -> Handler:
    """`handler` for holders of a token with `scope` only (for routes on the root app)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = refusal(request, settings_of(request), scope)
        return refused if refused is not None else await handler(request)

    return guarded
