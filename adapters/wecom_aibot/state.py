"""The state of each streamed answer, in Redis, so any web replica answers a refresh.

Per stream (bot/keys.py): a hash with `status` (open → done, or late when the answer went
through response_url), `deadline` (the end of WeCom's refresh window, epoch seconds),
`event_id`, `response_url`, `final` (the text the stream finished with) and `responded`;
and a string with the text so far, which the worker APPENDs to as the model writes. The
deadline and status are what a sweeper needs to finalize a stream a crashed worker left
open, and the response_url lets it deliver past the window; `overdue` lists those streams
from a sorted set of the open ones (bot/keys.py AIBOT_OPEN_STREAMS), without a SCAN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bot import keys

OPEN = "open"
DONE = "done"
LATE = "late"  # finished through response_url: the refresh window had passed
SWEPT = "swept"  # closed by the sweeper: the turn behind it died (adapters/wecom_aibot/sweep.py)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One stream as a refresh sees it."""

    status: str  # "" while the worker has not started it
    text: str  # streamed so far
    final: str
    deadline: float
    response_url: str
    responded: bool
    # Long connection: the callback's req_id, the chat an answer past it goes to, and
    # whether the stream was closed as the req_id's life ran out (adapters/wecom_aibot/longconn.py).
    req_id: str = ""
    chatid: str = ""
    is_group: bool = False
    window_closed: bool = False

    @property
    def finished(self) -> bool:
        return self.status in (DONE, LATE, SWEPT)

    @property
    def done(self) -> bool:
        """`finished`, by the name the sweeper core reads (adapters/cards.py)."""
        return self.finished

    @property
    def content(self) -> str:
        """What the member should see now."""
        return self.final if self.finished else self.text


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class StreamStore:
    """Reads and writes the streams of one app."""

    def __init__(self, redis: aioredis.Redis, app: str) -> None:
        self._redis = redis
        self._app = app

    def _member(self, stream_id: str) -> str:
        return f"{self._app}:{stream_id}"

    def _keys(self, stream_id: str) -> tuple[str, str]:
        return keys.aibot_stream(self._app, stream_id), keys.aibot_stream_text(self._app, stream_id)

    async def open(
        self,
        stream_id: str,
        *,
        event_id: str,
        deadline: float,
        response_url: str,
        req_id: str = "",
        chatid: str = "",
        is_group: bool = False,
    ) -> None:
        """Create the stream's state once (a redelivered turn keeps the first one)."""
        meta, text = self._keys(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(meta, "status", OPEN)
            pipe.hsetnx(meta, "deadline", f"{deadline:.0f}")
            pipe.hsetnx(meta, "event_id", event_id)
            pipe.hsetnx(meta, "response_url", response_url)
            if req_id:
                pipe.hsetnx(meta, "req_id", req_id)
                pipe.hsetnx(meta, "chatid", chatid)
                pipe.hsetnx(meta, "group", "1" if is_group else "0")
            pipe.expire(meta, keys.AIBOT_STREAM_TTL_S)
            pipe.set(text, "", nx=True, ex=keys.AIBOT_STREAM_TTL_S)
            pipe.zadd(keys.AIBOT_OPEN_STREAMS, {self._member(stream_id): deadline}, nx=True)
            pipe.zremrangebyscore(
                keys.AIBOT_OPEN_STREAMS, "-inf", time.time() - keys.AIBOT_STREAM_TTL_S
            )
            await pipe.execute()

    async def append(self, stream_id: str, piece: str) -> None:
        await self._redis.append(self._keys(stream_id)[1], piece)

    async def reset(self, stream_id: str) -> None:
        """The text so far is void (a fallback model starts the answer again)."""
        await self._redis.set(self._keys(stream_id)[1], "", ex=keys.AIBOT_STREAM_TTL_S)

    async def finalize(self, stream_id: str, text: str, status: str = DONE) -> None:
        """The stream's final text; later refreshes answer it with `finish: true`."""
        meta, _ = self._keys(stream_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping={"final": text, "status": status})
            pipe.expire(meta, keys.AIBOT_STREAM_TTL_S)
            pipe.zrem(keys.AIBOT_OPEN_STREAMS, self._member(stream_id))
            await pipe.execute()

    async def claim_for_sweep(self, stream_id: str) -> bool:
        """True for exactly one caller: the one sweeper that closes this stream."""
        return bool(await self._redis.hsetnx(self._keys(stream_id)[0], "swept", "1"))

    async def claim_window_close(self, stream_id: str) -> bool:
        """True for exactly one caller: the connection holder that closes this stream as its
        req_id's life runs out."""
        return bool(await self._redis.hsetnx(self._keys(stream_id)[0], "window_closed", "1"))

    async def mark_responded(self, stream_id: str) -> None:
        """The message's response_url has been used (it takes one POST)."""
        await self._redis.hset(self._keys(stream_id)[0], "responded", "1")

    async def snapshot(self, stream_id: str) -> Snapshot:
        meta, text = self._keys(stream_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(
                meta,
                "status",
                "final",
                "deadline",
                "response_url",
                "responded",
                "req_id",
                "chatid",
                "group",
                "window_closed",
            )
            pipe.get(text)
            fields, so_far = await pipe.execute()
        status, final, deadline, url, responded, req_id, chatid, group, closed = fields
        try:
            until = float(_text(deadline) or 0)
        except ValueError:
            until = 0.0
        return Snapshot(
            status=_text(status),
            text=_text(so_far),
            final=_text(final),
            deadline=until,
            response_url=_text(url),
            responded=_text(responded) == "1",
            req_id=_text(req_id),
            chatid=_text(chatid),
            is_group=_text(group) == "1",
            window_closed=_text(closed) == "1",
        )


async def overdue(
    redis: aioredis.Redis, now: float, limit: int = 100, *, after: float = float("-inf")
) -> list[tuple[str, str]]:
    """(app, stream id) of open streams whose refresh window ended before `now` (and not
    before `after`), oldest first: what a sweeper finalizes (with the text so far, through
    their response_url)."""
    members = await redis.zrangebyscore(keys.AIBOT_OPEN_STREAMS, after, now, start=0, num=limit)
    found = []
    for member in members:
        app, _, stream_id = _text(member).partition(":")
        found.append((app, stream_id))
    return found
