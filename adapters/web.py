"""The web chat channel: replies go to a Redis stream the waiting HTTP request reads.

Stream `webchat:{event_id}` carries events `delta` (a streamed piece of text), `reset`
(the deltas so far are void: a fallback model starts the answer again), `message`
(one complete reply part), `sources` (the documents the answer drew on, as JSON
`[{"title", "section"}]`: the page lists them under the answer, so the message leaves out
the plain-text line other platforms get) and `done`. Both JSON and SSE answers of
`/api/chat` read it.

A model streams one piece per token, so the deltas are gathered: at most `DELTAS_PER_S`
entries a second, the first at once, and words held back go out when the throttle allows
even if the model pauses (a tool call). `send` writes what is still held before the
`message`, never after it: the deltas still add up to what the model wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.cards import Throttle
from bot import keys
from bot.domain import STREAM_RESTART, OnDelta, Platform, Reply, sources_line

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 20_000
# Stream entries a second for one answer's deltas: smooth typing on the page, and a Redis
# round trip per tenth of a second instead of one per token.
DELTAS_PER_S = 10.0


@dataclass(frozen=True, slots=True)
class WebEvent:
    kind: str  # "delta", "reset", "message", "sources" or "done"
    text: str = ""


class WebSender:
    """Sends replies of the web channel by appending them to the request's stream."""

    platform = Platform.WEB

    def __init__(
        self,
        redis: aioredis.Redis,
        app: str = "default",
        *,
        deltas_per_s: float = DELTAS_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.app = app
        self._deltas_per_s = deltas_per_s
        self._clock = clock
        # Per answer, the write of deltas the throttle held back (`_HeldBack`).
        self._held: dict[str, _HeldBack] = {}

    def split(self, text: str) -> list[str]:
        return [text[i : i + MAX_TEXT_CHARS] for i in range(0, len(text), MAX_TEXT_CHARS)] or [""]

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:  # noqa: ARG002
        await self._write_held_now(reply.in_reply_to)
        line = sources_line(reply.citations)
        if not line or not reply.text.endswith(line):
            # No citations, or a text that no longer ends with them (a handoff notice):
            # sent as it is, like on every platform.
            return await self._append(reply.in_reply_to, "message", reply.text)
        sent = await self._append(reply.in_reply_to, "message", reply.text.removesuffix(line))
        listed = [{"title": s.title, "section": s.section} for s in reply.citations]
        await self._append(reply.in_reply_to, "sources", json.dumps(listed, ensure_ascii=False))
        return sent

    async def finish(self, reply: Reply) -> None:
        """Mark the reply complete, so the waiting request returns."""
        await self._write_held_now(reply.in_reply_to)
        await self._append(reply.in_reply_to, "done", "")

    def delta_sink(self, reply: Reply) -> OnDelta:
        """Where streamed model output goes while the answer is being written."""
        event_id = reply.in_reply_to
        throttle = Throttle(self._deltas_per_s)
        pieces: list[str] = []  # held back by the throttle
        writing = asyncio.Lock()  # one write at a time: deltas land in order

        async def write_held() -> None:
            async with writing:
                if pieces:
                    text = "".join(pieces)
                    pieces.clear()
                    throttle.mark(self._clock())
                    await self._append(event_id, "delta", text)

        def next_write_in() -> float | None:
            return throttle.wait(self._clock()) if pieces else None

        async def sink(piece: str) -> None:
            if piece == STREAM_RESTART:
                await self._stop_held(event_id, write_rest=False)
                async with writing:
                    pieces.clear()  # void, like the deltas before them
                    await self._append(event_id, "reset", "")
                return
            pieces.append(piece)
            now = self._clock()
            if throttle.due(now):
                await self._stop_held(event_id, write_rest=False)  # this write carries it
                await write_held()
            elif event_id not in self._held:
                held = _HeldBack(write_held, next_write_in)
                self._held[event_id] = held
                held.task.add_done_callback(lambda _: self._forget(event_id, held))

        return sink

    def _forget(self, event_id: str, held: _HeldBack) -> None:
        if self._held.get(event_id) is held:
            del self._held[event_id]

    async def _write_held_now(self, event_id: str) -> None:
        await self._stop_held(event_id, write_rest=True)

    async def _stop_held(self, event_id: str, *, write_rest: bool) -> None:
        held = self._held.pop(event_id, None)
        if held is not None:
            await held.stop(write_rest=write_rest)

    async def _append(self, event_id: str, kind: str, text: str) -> str:
        key = keys.webchat_stream(event_id)
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.xadd(key, {"kind": kind, "text": text}, maxlen=10_000)
            pipe.expire(key, keys.WEBCHAT_STREAM_TTL_S)
            entry_id, _ = await pipe.execute()
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


class _HeldBack:
    """Writes the deltas the throttle held back, when it allows, until none are left.
    Stopped, it writes the rest at once (or drops it: a restart voids it). A write under
    way is waited for, not cancelled: an XADD cut off by cancelling may still reach Redis,
    after what comes next."""

    def __init__(
        self, write: Callable[[], Awaitable[None]], wait_s: Callable[[], float | None]
    ) -> None:
        self._write = write
        self._wait_s = wait_s  # seconds until the next write; None: nothing held
        self._writing = False
        self._stopping = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping and (delay_s := self._wait_s()) is not None:
            await asyncio.sleep(delay_s)
            self._writing = True
            try:
                await self._write()
            except (RedisError, OSError) as exc:  # the final message carries the words
                log.info("web delta write skipped: %s", exc)
                return
            finally:
                self._writing = False

    async def stop(self, *, write_rest: bool) -> None:
        self._stopping = True
        if not self._writing:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if write_rest:
            await self._write()


async def read_events(
    redis: aioredis.Redis, event_id: str, *, block_ms: int = 1000
) -> AsyncIterator[WebEvent]:
    """Yield the events of one reply in order until `done` (callers bound the total time)."""
    key = keys.webchat_stream(event_id)
    last = "0-0"
    while True:
        batches: Any = await redis.xread({key: last}, block=block_ms, count=100)
        for _stream, entries in batches or []:
            for entry_id, fields in entries:
                last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                kind = _text(fields.get(b"kind", fields.get("kind", "")))
                text = _text(fields.get(b"text", fields.get("text", "")))
                yield WebEvent(kind, text)
                if kind == "done":
                    return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
