"""The setup check (admins): the checks of `bot doctor`, run on demand with a button, each
with its mark and what to do in the page's language. A run is bounded (SETUP_CHECK_TIMEOUT_S)
so the page never hangs on a platform or a model that does not answer."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.admin.common import settings_of
from bot.console import i18n
from bot.console.accounts import ADMIN
from bot.console.guard import form, lang, operator, page
from bot.console.render import render
from bot.doctor.result import Result, Status
from bot.doctor.run import run_bounded

log = logging.getLogger(__name__)

SETUP_CHECK_TIMEOUT_S = 25.0
_CLASS = {Status.OK: "good", Status.FAIL: "bad", Status.WARN: "warn", Status.SKIP: "hint"}


@page(ADMIN)
async def setup_check_page(request: web.Request) -> web.StreamResponse:
    return render(request, "setup_check.html", {"results": None})


@page(ADMIN)
async def run_setup_check(request: web.Request) -> web.StreamResponse:
    await form(request)  # the CSRF field is checked by the guard
    results = await run_bounded(settings_of(request), SETUP_CHECK_TIMEOUT_S)
    failed = sum(r.status is Status.FAIL for r in results)
    warned = sum(r.status is Status.WARN for r in results)
    log.info(
        "setup check by %s: %d checks, %d failed, %d warnings",
        operator(request).name,
        len(results),
        failed,
        warned,
    )
    t = i18n.translator(lang(request))
    said = (
        {"error": t("sc.summary", fail=failed, warn=warned, total=len(results))}
        if failed
        else {"notice": t("sc.all_good", total=len(results))}
    )
    rows = [_row(result, lang(request)) for result in results]
    return render(request, "setup_check.html", {"results": rows, **said})


def _row(result: Result, language: str) -> dict[str, str]:
    return {
        "name": result.name,
        "status": result.status.name.lower(),
        "css": _CLASS[result.status],
        "detail": result.detail,
        "fix": result.fix_en if language == i18n.EN else result.fix_zh,
    }
