"""Console pages from Jinja2 templates (bot/console/templates), escaped by default."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from bot.console import i18n
from bot.console.keys import LANG, OPERATOR, PRESENCE

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("bot.console", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _local_time(value: str | datetime) -> str:
    """An ISO time as `2026-12-03 14:05` in the server's local zone."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


_ENV.filters["local_time"] = _local_time


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    lang = request.get(LANG, i18n.ZH)
    found = request.get(OPERATOR)
    base = {
        "t": i18n.translator(lang),
        "lang": lang,
        "operator": found,
        "csrf": found.session.csrf if found is not None else "",
        "path": request.path,
        "presence": request.get(PRESENCE, ""),  # "" for roles that do not answer customers
        "notice": "",
        "error": "",
    }
    html = _ENV.get_template(template).render({**base, **context})
    response = web.Response(text=html, content_type="text/html", status=status)
    # Pages hold customer data: never cached, never framed by another site.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def redirect(location: str) -> web.Response:
    """A 303 to `location` (after a POST the browser GETs it; also fine after a GET)."""
    return web.Response(status=303, headers={"Location": location})
