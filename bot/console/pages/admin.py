"""Admin pages: accounts (add, disable, enable, reset a password) and the audit log."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.admin.common import engine_of
from bot.console import accounts, audit, i18n
from bot.console.accounts import ADMIN
from bot.console.guard import form, page
from bot.console.keys import LANG
from bot.console.pages.common import audit_action
from bot.console.render import redirect, render

_NOTICES = frozenset({"account_added", "account_disabled", "account_enabled", "password_reset"})


@page(ADMIN)
async def accounts_page(request: web.Request) -> web.StreamResponse:
    return await _accounts(request)


@page(ADMIN)
async def add_account(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    username, role = data.get("username", "").strip(), data.get("role", "")
    engine = engine_of(request)
    try:
        await asyncio.to_thread(accounts.add, engine, username, data.get("password", ""), role)
    except accounts.AccountError as exc:
        return await _accounts(request, error=str(exc), status=400)
    await audit_action(
        request, "account.add", f"account:{username}", None, {"role": role, "disabled": False}
    )
    return redirect("/console/accounts?done=account_added")


@page(ADMIN)
async def disable_account(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, True)


@page(ADMIN)
async def enable_account(request: web.Request) -> web.StreamResponse:
    return await _set_disabled(request, False)


@page(ADMIN)
async def reset_password(request: web.Request) -> web.StreamResponse:
    username = request.match_info["username"]
    password = (await form(request)).get("password", "")
    try:
        await asyncio.to_thread(accounts.set_password, engine_of(request), username, password)
    except accounts.AccountError as exc:
        return await _accounts(request, error=str(exc), status=400)
    await audit_action(
        request, "account.reset_password", f"account:{username}", None, {"password": "changed"}
    )
    return redirect("/console/accounts?done=password_reset")


@page(ADMIN)
async def audit_page(request: web.Request) -> web.StreamResponse:
    entries = await asyncio.to_thread(audit.recent, engine_of(request), limit=300)
    return render(request, "audit.html", {"entries": entries})


async def _set_disabled(request: web.Request, disabled: bool) -> web.StreamResponse:
    username = request.match_info["username"]
    try:
        await asyncio.to_thread(accounts.set_disabled, engine_of(request), username, disabled)
    except accounts.AccountError as exc:
        return await _accounts(request, error=str(exc), status=409)
    await audit_action(
        request,
        "account.disable" if disabled else "account.enable",
        f"account:{username}",
        {"disabled": not disabled},
        {"disabled": disabled},
    )
    done = "account_disabled" if disabled else "account_enabled"
    return redirect(f"/console/accounts?done={done}")


async def _accounts(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    found = await asyncio.to_thread(accounts.all_accounts, engine_of(request))
    t = i18n.translator(request[LANG])
    done = request.query.get("done", "")
    return render(
        request,
        "accounts.html",
        {
            "accounts": found,
            "roles": accounts.ROLES,
            "notice": t(f"notice.{done}") if done in _NOTICES else "",
            "error": error,
        },
        status=status,
    )
