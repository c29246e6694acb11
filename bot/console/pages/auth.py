"""Signing in and out of the console."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math

from aiohttp import web

from bot.admin.common import engine_of, redis_of, settings_of
from bot.console import accounts, audit, i18n, sessions, throttle
from bot.console.guard import LOGIN_CSRF_COOKIE, form, login_csrf, operator, page, public, secure
from bot.console.keys import LANG
from bot.console.render import redirect, render
from bot.handoff import presence
from bot.web.identity import client_address

log = logging.getLogger(__name__)


def _safe_next(value: str) -> str:
    """Only a console path: never another site (`//evil`, `https://…`) after sign-in."""
    if value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


@public
async def login_page(request: web.Request) -> web.StreamResponse:
    t = i18n.translator(request[LANG])
    error = t("login.expired") if request.query.get("expired") else ""
    return _login_form(request, next_=_safe_next(request.query.get("next", "")), error=error)


@public
async def login(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    t = i18n.translator(request[LANG])
    username = data.get("username", "").strip()[:64]
    next_ = _safe_next(data.get("next", ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    given = data.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        return _login_form(
            request, next_=next_, username=username, error=t("csrf.text"), status=403
        )
    settings, redis, engine = settings_of(request), redis_of(request), engine_of(request)
    conf = settings.console
    address = client_address(request)
    wait = await throttle.locked_for(redis, username, address, max_failures=conf.login_failures)
    if wait:
        log.warning(
            "console: sign-in of %r from %s refused: locked for %d s", username, address, wait
        )
        error = t("login.locked", minutes=max(1, math.ceil(wait / 60)))
        return _login_form(request, next_=next_, username=username, error=error, status=429)
    account = await asyncio.to_thread(
        accounts.authenticate, engine, username, data.get("password", "")
    )
    if account is None:
        await throttle.failed(redis, username, address, window_s=int(conf.lockout_s))
        log.warning("console: failed sign-in as %r from %s", username, address)
        return _login_form(
            request, next_=next_, username=username, error=t("login.failed"), status=401
        )
    await throttle.succeeded(redis, username)
    token, _session = await sessions.create(
        redis, account.id or 0, account.username, idle_s=conf.session_idle_s
    )
    await asyncio.to_thread(
        audit.record, engine, account.username, "login", account.username, address=address
    )
    log.info("console: %s signed in from %s", account.username, address)
    response = redirect(next_)
    response.set_cookie(
        sessions.COOKIE,
        token,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return response


@page(*accounts.ROLES)
async def logout(request: web.Request) -> web.StreamResponse:
    found = operator(request)
    await sessions.end(redis_of(request), found.session)
    await presence.leave(redis_of(request), found.name)  # signed out: off the desk too
    response = redirect("/console/login")
    response.del_cookie(sessions.COOKIE, path="/console")
    return response


def _login_form(
    request: web.Request,
    *,
    next_: str,
    username: str = "",
    error: str = "",
    status: int = 200,
) -> web.Response:
    token = login_csrf(request)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": next_, "username": username, "error": error},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/console",
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )
    return response
