"""An agent's presence from the console header: online or away, and the page's heartbeat.

Every console request of an admin or agent keeps their status alive (bot/console/guard.py);
the heartbeat is such a request that does nothing else, sent by console.js while any
console page is open, so an agent reading a knowledge page stays online and one who closed
the browser goes offline by itself (bot/handoff/presence.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from bot.admin.common import engine_of, redis_of, settings_of
from bot.console.guard import form, operator, page
from bot.console.keys import PRESENCE
from bot.console.pages.common import audit_action
from bot.console.render import redirect
from bot.console.team import DESK_ROLES
from bot.handoff import claims, presence, waiting
from bot.handoff.desk import Desk

log = logging.getLogger(__name__)


@page(*DESK_ROLES)
async def set_presence(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    status = data.get("status", "")
    if status not in presence.STATUSES:
        raise web.HTTPBadRequest(text=f"status is one of {', '.join(presence.STATUSES)}")
    who = operator(request).name
    await presence.set_status(redis_of(request), who, status, now=time.time())
    log.info("console: %s is %s", who, status)
    if status == presence.ONLINE:
        await _deal_out_the_queue(request)
    return redirect(_back_to(data.get("next", "")))


async def _deal_out_the_queue(request: web.Request) -> None:
    """Someone is free now: the customers waiting unclaimed go to the online agents in turn,
    and each is told a person has their conversation."""
    settings, redis, engine = settings_of(request), redis_of(request), engine_of(request)
    made = await waiting.assign_backlog(engine, redis)
    if not made:
        return
    desk = Desk(settings, redis, engine)
    text = settings.handoff.assigned_text.strip()

    async def tell(conv_id: int, agent: str) -> None:
        await audit_action(
            request, "conversation.assign", f"conversation:{conv_id}", None, {"agent": agent}
        )
        conv = await desk.get(conv_id)
        if text and conv is not None:
            await desk.send_to_customer(conv, text, agent, backend=waiting.BACKEND)

    await asyncio.gather(*(tell(conv_id, agent) for conv_id, agent in made))


@page(*DESK_ROLES)
async def heartbeat(request: web.Request) -> web.StreamResponse:
    # The guard has already kept the status alive; the page learns what it is, and how many
    # customers wait unclaimed past the alert (the badge on the inbox link, on every page).
    alert_s = settings_of(request).handoff.wait_alert_s
    late = await asyncio.to_thread(claims.late, engine_of(request), alert_s)
    return web.json_response(
        {"status": request[PRESENCE], "late": late}, headers={"Cache-Control": "no-store"}
    )


def _back_to(path: str) -> str:
    """The console page the toggle was pressed on (never another site)."""
    if path.startswith("/console/") and "\\" not in path and "//" not in path:
        return path
    return "/console/inbox"
