"""The sweeper: closes the streams whose turn died, so no member watches "正在生成" forever.

A stream is open from the message's callback until the worker finishes it (adapter.send)
or closes it unanswered (adapter.finish). A worker killed mid-turn is covered by the broker:
the message comes back after the visibility timeout and a new worker streams it again. What
is left is a turn that never ends — redelivered too late, failed for good, or its message
lost with a Redis that lost data. Such a stream is still open long after its refresh
window: the sweeper, run periodically by the workers (bot/runtime.py), closes it with the
text so far and a short note, through the message's one-use response_url (the window is
over), and marks it closed so a refresh or a late worker never shows a second ending.

In long-connection mode nothing can reach a stream after its req_id's life (about 5
minutes): the replica holding the connection closes each stream still open as that life
runs out, with the text so far and word that the answer follows (longconn.py); a turn that
does answer later sends it as aibot_send_msg, and one that never does gets the sweeper's
note the same way.
"""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis

from adapters import cards as shared
from adapters.cards import CUT_NOTE, NOTHING_NOTE, closing_text
from adapters.wecom_aibot import outbox, respond
from adapters.wecom_aibot.state import SWEPT, Snapshot, StreamStore, overdue

__all__ = ["CUT_NOTE", "GRACE_S", "NOTHING_NOTE", "closing_text", "sweep"]

# After the refresh window, a turn may still be running (a slow model, retries): past this
# much more, it is dead. Above the agent's deadline plus the broker's redelivery.
GRACE_S = 300.0


class _Streams:
    """One app's streams as the shared sweeper core (adapters/cards.py) handles them."""

    def __init__(self, redis: aioredis.Redis, app: str) -> None:
        self.store = StreamStore(redis, app)

    async def get(self, stream_id: str) -> Snapshot:
        return await self.store.snapshot(stream_id)

    async def claim_for_sweep(self, stream_id: str) -> bool:
        return await self.store.claim_for_sweep(stream_id)

    async def release_sweep(self, stream_id: str) -> None:
        """Never asked: a stream's ending is not tried again (its response_url is one use)."""

    async def finish(self, stream_id: str, text: str, status: str) -> None:
        await self.store.finalize(stream_id, text, status)


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    *,
    now: float,
    grace_s: float = GRACE_S,
    timeout_s: float = 10.0,
    limit: int = 100,
) -> int:
    """Close streams open `grace_s` past their refresh window; how many were closed. One
    whose response_url is expired (an hour) or refused still closes for any refresh."""

    async def end(app: str, stream_id: str, snap: Snapshot, text: str) -> None:
        if snap.response_url and not snap.responded:
            await respond.post(http, snap.response_url, text, timeout_s=timeout_s)
            await StreamStore(redis, app).mark_responded(stream_id)
        elif snap.req_id and snap.chatid:
            # Long connection: the req_id is long gone (the holder closed the stream as it
            # ran out, saying more would follow): the note goes to the chat.
            await outbox.push_send(redis, app, snap.chatid, is_group=snap.is_group, text=text)

    found = await overdue(redis, now - grace_s, limit)
    return await shared.sweep_open(
        found,
        lambda app: _Streams(redis, app),
        end,
        what="wecom_aibot stream",
        swept=SWEPT,
        retry_when_down=False,
    )
