"""The sweeper: closes the streams whose turn died, so no member watches "正在生成" forever.

A stream is open from the message's callback until the worker finishes it (adapter.send)
or closes it unanswered (adapter.finish). A worker killed mid-turn is covered by the broker:
the message comes back after the visibility timeout and a new worker streams it again. What
is left is a turn that never ends — redelivered too late, failed for good, or its message
lost with a Redis that lost data. Such a stream is still open long after its refresh
window: the sweeper, run periodically by the workers (bot/runtime.py), closes it with the
text so far and a short note, through the message's one-use response_url (the window is
over), and marks it closed so a refresh or a late worker never shows a second ending.
"""

from __future__ import annotations

import logging

import aiohttp
import redis.asyncio as aioredis

from adapters.wecom_aibot import respond
from adapters.wecom_aibot.state import SWEPT, StreamStore, overdue
from bot.errors import BotError

log = logging.getLogger(__name__)

CUT_NOTE = "（回答中断了，以上是已生成的部分。如需完整答复，请再发一次您的问题。）"
NOTHING_NOTE = "抱歉，这条消息没能及时回答，请再发一次您的问题。"
# After the refresh window, a turn may still be running (a slow model, retries): past this
# much more, it is dead. Above the agent's deadline plus the broker's redelivery.
GRACE_S = 300.0


def closing_text(so_far: str) -> str:
    """What the member sees at the end of a stream whose turn died."""
    so_far = so_far.strip()
    return f"{so_far}\n\n{CUT_NOTE}" if so_far else NOTHING_NOTE


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    *,
    now: float,
    grace_s: float = GRACE_S,
    timeout_s: float = 10.0,
    limit: int = 100,
) -> int:
    """Close streams open `grace_s` past their refresh window; how many were closed."""
    closed = 0
    for app, stream_id in await overdue(redis, now - grace_s, limit):
        store = StreamStore(redis, app)
        if not await store.claim_for_sweep(stream_id):
            continue  # another worker's sweeper has it
        snap = await store.snapshot(stream_id)
        if snap.finished:
            continue  # finished between the listing and the claim
        text = closing_text(snap.text)
        if snap.response_url and not snap.responded:
            try:
                await respond.post(http, snap.response_url, text, timeout_s=timeout_s)
                await store.mark_responded(stream_id)
            except BotError as exc:
                # Expired (an hour) or refused: the stream still closes for any refresh.
                log.warning(
                    "wecom_aibot %s: closing %s via response_url failed: %s", app, stream_id, exc
                )
        await store.finalize(stream_id, text, SWEPT)
        log.warning(
            "wecom_aibot %s: closed stream %s left open by a turn that died", app, stream_id
        )
        closed += 1
    return closed
