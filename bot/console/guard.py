"""Who may do what in the console: the session, the role and the CSRF check of every request.

Each console handler declares its roles with `@page(...)` (or `@public`). The middleware
finds the session of the cookie, re-reads the account (a disabled account, or a password
changed after sign-in, ends the session at once), checks the role, and for every
state-changing request the CSRF token and, when the browser sends one, the Origin.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import BodyPartReader, web

from bot.admin.common import engine_of, redis_of, settings_of
from bot.console import accounts, i18n, sessions, team
from bot.console.keys import LANG, OPERATOR, PRESENCE, UPLOAD, Operator
from bot.console.render import redirect, render
from bot.handoff import presence, state
from bot.web import identity as web_identity

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOGIN_CSRF_COOKIE = "bot_console_login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
ALL_ROLES = accounts.ROLES
_MAX_TOKEN = 256  # bytes of a CSRF field read before giving up


def page(*roles: str) -> Callable[[Handler], Handler]:
    """Mark a handler as open to operators with one of `roles`."""

    def mark(handler: Handler) -> Handler:
        handler.console_roles = roles  # type: ignore[attr-defined]
        return handler

    return mark


def public(handler: Handler) -> Handler:
    """Mark a handler as open without a session (the sign-in page, static files)."""
    handler.console_roles = None  # type: ignore[attr-defined]
    return handler


def operator(request: web.Request) -> Operator:
    return request[OPERATOR]


def lang(request: web.Request) -> str:
    return request[LANG]


def secure(request: web.Request) -> bool:
    return web_identity.secure_cookies(request, settings_of(request))


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = settings_of(request).console
    chosen = request.query.get("lang")
    request[LANG] = i18n.language(
        chosen if chosen in i18n.LANGUAGES else request.cookies.get(i18n.COOKIE), settings.language
    )
    response = await _guarded(request, handler)
    if chosen in i18n.LANGUAGES:
        response.set_cookie(
            i18n.COOKIE, chosen, max_age=365 * 86400, path="/console", samesite="Lax"
        )
    return response


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # no such page (404) or method (405): nothing to guard
    roles = getattr(handler, "console_roles", ())
    if request.method not in SAFE_METHODS and not _same_origin(request):
        return refusal(request, 403, "csrf.title", "csrf.text")
    if roles is None:  # public
        return await handler(request)
    found = await _operator(request)
    if found is None:
        if request.method in SAFE_METHODS:
            expired = sessions.COOKIE in request.cookies
            target = request.path_qs if request.path.startswith("/console/") else "/console/"
            query = f"?next={quote(target, safe='')}" + ("&expired=1" if expired else "")
            response = redirect(f"/console/login{query}")
            if expired:
                response.del_cookie(sessions.COOKIE, path="/console")
            return response
        return refusal(request, 401, "login.title", "login.expired")
    request[OPERATOR] = found
    if found.role in team.DESK_ROLES:  # a request of theirs shows they are still at the desk
        request[PRESENCE] = await presence.touch(redis_of(request), found.name, now=time.time())
    if request.method not in SAFE_METHODS and not await _csrf_ok(request, found):
        log.warning(
            "console: %s %s by %s without a valid CSRF token",
            request.method,
            request.path,
            found.name,
        )
        return refusal(request, 403, "csrf.title", "csrf.text")
    if found.role not in roles:
        log.warning("console: %s (%s) refused %s", found.name, found.role, request.path)
        return refusal(request, 403, "denied.title", "denied.text", role=found.role)
    return await handler(request)


async def _operator(request: web.Request) -> Operator | None:
    token = request.cookies.get(sessions.COOKIE, "")
    if not token:
        return None
    conf = settings_of(request).console
    redis = redis_of(request)
    session = await sessions.load(
        redis, token, idle_s=conf.session_idle_s, max_age_s=conf.session_max_s
    )
    if session is None:
        return None
    account = await asyncio.to_thread(accounts.get_by_id, engine_of(request), session.account_id)
    changed = state.aware(account.password_changed_at).timestamp() if account else 0.0
    if account is None or account.disabled or changed > session.created:
        await sessions.end(redis, session)
        return None
    return Operator(account, session)


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin (when it sends one) must be this site: no cross-site posts."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


async def _csrf_ok(request: web.Request, found: Operator) -> bool:
    given = request.headers.get("X-CSRF-Token", "")
    if not given and request.content_type == "multipart/form-data":
        given = await _first_part_token(request)
    elif not given and request.content_type in FORM_TYPES:
        value = (await request.post()).get("csrf_token", "")  # cached for the handler
        given = value if isinstance(value, str) else ""
    return bool(given) and hmac.compare_digest(given.encode(), found.session.csrf.encode())


async def _first_part_token(request: web.Request) -> str:
    """The CSRF field of a multipart form, which must come first (it does in our forms:
    browsers send fields in page order), read without buffering the files behind it."""
    reader = await request.multipart()
    part = await reader.next()
    if not isinstance(part, BodyPartReader) or part.name != "csrf_token" or part.filename:
        return ""
    request[UPLOAD] = reader  # the handler reads the files on from here
    token = b""
    while chunk := await part.read_chunk(_MAX_TOKEN):
        token += chunk
        if len(token) > _MAX_TOKEN:
            return ""
    return token.decode("utf-8", "replace")


async def form(request: web.Request) -> dict[str, str]:
    """The posted form, read once (the CSRF field is kept for the check)."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def login_csrf(request: web.Request) -> str:
    """The sign-in form's token: a cookie and a hidden field that must match (no session yet)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def refusal(
    request: web.Request, status: int, title: str, text: str, **values: Any
) -> web.Response:
    t = i18n.translator(request.get(LANG, i18n.ZH))
    return render(
        request,
        "message.html",
        {"title": t(title), "text": t(text, **values)},
        status=status,
    )
