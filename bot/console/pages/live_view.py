"""Server-sent events for an open conversation: `changed` the moment a message of it is stored
(bot/live.py), and a comment line every few seconds so proxies keep the stream open.

The page then fetches the messages fragment it already knows how to show; the stream ends
after `MAX_STREAM_S` (the browser's EventSource reconnects), so a session that ended stops
being served within that time.
"""

from __future__ import annotations

import contextlib
import time

from aiohttp import web

from bot import keys
from bot.admin.common import redis_of
from bot.console.accounts import ROLES
from bot.console.guard import page
from bot.console.pages.inbox import conversation_or_404

KEEPALIVE_S = 15.0
MAX_STREAM_S = 300.0


@page(*ROLES)
async def events(request: web.Request) -> web.StreamResponse:
    conv_id = int(request.match_info["id"])
    await conversation_or_404(request, conv_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    pubsub = redis_of(request).pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(keys.live_conversation(conv_id))
        await response.write(b"retry: 3000\n\n")
        ends = time.monotonic() + MAX_STREAM_S
        while time.monotonic() < ends:
            message = await pubsub.get_message(timeout=KEEPALIVE_S)
            if message is not None:
                await response.write(b"event: changed\ndata: {}\n\n")
            else:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the page was closed
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
    return response
