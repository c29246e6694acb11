"""Customer bindings: which order-system customer a platform user is (admins change them,
agents read them).

Agents may look a binding up: they already see order tools' data in the transcripts, and
"which customer is this user?" is a question of the handoff desk. Binding and unbinding
are for admins, as in the admin API, through the same `BindingStore` and its checks. Both
are in the audit log, with the binding before and after (binding a bound user again
moves them to the new customer: the old one is in the log).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.admin.common import parts_of
from bot.console import i18n
from bot.console.accounts import ADMIN, AGENT
from bot.console.guard import form, lang, operator, page, refusal
from bot.console.pages.common import audit_action
from bot.console.render import redirect, render
from bot.domain import DEFAULT_APP, Platform
from bot.orders.bindings import Binding, BindingSource, BindingStore

VIEWERS = (ADMIN, AGENT)
PLATFORMS = tuple(p.value for p in Platform)
PER_PAGE = 50
MAX_PAGE = 10_000
MAX_SEARCH = 255
_FIELDS = ("platform", "app", "user_id", "customer_id")
_DONE = ("added", "rebound", "removed")


@page(*VIEWERS)
async def bindings_page(request: web.Request) -> web.StreamResponse:
    t = i18n.translator(lang(request))
    done = request.query.get("done", "")
    return await _page(request, notice=t(f"bind.{done}") if done in _DONE else "")


@page(ADMIN)
async def add_binding(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    values = {name: data.get(name, "").strip() for name in _FIELDS}
    values["app"] = values["app"] or DEFAULT_APP
    store = _store(request)
    before = await asyncio.to_thread(
        store.get, values["platform"], values["app"], values["user_id"]
    )
    try:
        after = await asyncio.to_thread(
            store.bind,
            values["platform"],
            values["app"],
            values["user_id"],
            values["customer_id"],
            BindingSource.ADMIN,
        )
    except ValueError as exc:
        t = i18n.translator(lang(request))
        return await _page(request, error=t("bind.invalid", reason=exc), draft=values, status=400)
    await audit_action(
        request,
        "binding.add",
        _target(after),
        before.to_json() if before else None,
        after.to_json(),
    )
    moved = before is not None and before.customer_id != after.customer_id
    query = {"q": after.user_id, "done": "rebound" if moved else "added"}
    return redirect("/console/bindings?" + urlencode(query))


@page(ADMIN)
async def unbind(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    key = (data.get("platform", ""), data.get("app", ""), data.get("user_id", ""))
    store = _store(request)
    before = await asyncio.to_thread(store.get, *key)
    if before is None or not await asyncio.to_thread(store.unbind, *key):
        return refusal(request, 404, "notfound.title", "bind.not_found")
    await audit_action(request, "binding.remove", _target(before), before.to_json(), None)
    back = {k: data[k] for k in ("q", "platform_filter") if data.get(k)}
    return redirect("/console/bindings?" + urlencode({**back, "done": "removed"}))


async def _page(
    request: web.Request,
    *,
    notice: str = "",
    error: str = "",
    draft: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    q = request.query
    search = q.get("q", "").strip()[:MAX_SEARCH]
    platform = q.get("platform_filter", "")
    platform = platform if platform in PLATFORMS else ""
    raw_page = q.get("page", "1")
    number = min(int(raw_page), MAX_PAGE) if raw_page.isdigit() and int(raw_page) > 0 else 1
    store = _store(request)
    found = await asyncio.to_thread(
        lambda: store.list(
            platform=platform,
            search=search,
            limit=PER_PAGE + 1,  # one more: is there a next page?
            offset=(number - 1) * PER_PAGE,
        )
    )
    chosen = {k: v for k, v in (("q", search), ("platform_filter", platform)) if v}
    context: dict[str, Any] = {
        "rows": found[:PER_PAGE],
        "platforms": PLATFORMS,
        "search": search,
        "platform_filter": platform,
        "page": number,
        "prev_url": _url(chosen, number - 1) if number > 1 else "",
        "next_url": _url(chosen, number + 1) if len(found) > PER_PAGE else "",
        "can_edit": operator(request).role == ADMIN,
        "draft": draft or {"platform": "", "app": DEFAULT_APP, "user_id": "", "customer_id": ""},
        "notice": notice,
        "error": error,
    }
    return render(request, "bindings.html", context, status=status)


def _url(chosen: dict[str, str], number: int) -> str:
    return "/console/bindings?" + urlencode({**chosen, "page": str(number)})


def _store(request: web.Request) -> BindingStore:
    return parts_of(request).bindings


def _target(binding: Binding) -> str:
    return f"binding:{binding.platform}/{binding.app}/{binding.user_id}"
