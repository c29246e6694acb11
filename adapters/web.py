"""The web chat channel: replies go to a Redis stream the waiting HTTP request reads.

Stream `webchat:{event_id}` carries events `delta` (a streamed piece of text), `reset`
(the deltas so far are void: a fallback model starts the answer again), `message`
(one complete reply part), `sources` (the documents the answer drew on, as JSON
`[{"title", "section"}]`: the page lists them under the answer, so the message leaves out
the plain-text line other platforms get) and `done`. Both JSON and SSE answers of
`/api/chat` read it.

A model streams one piece per token, so the deltas are gathered: at most `DELTAS_PER_S`
entries a second, the first at once, and words held back go out when the throttle allows
even if the model pauses (a tool call). `send` writes what is still held with the
`message`, just before it and never after: the deltas still add up to what the model wrote.
Entries that go together (the rest of the deltas, the message, its sources) are one round
trip.
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
        # Per answer whose deltas the throttle holds back: the later write of them.
        self._held: dict[str, _HeldBack] = {}

    def split(self, text: str) -> list[str]:
        return [text[i : i + MAX_TEXT_CHARS] for i in range(0, len(text), MAX_TEXT_CHARS)] or [""]

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:  # noqa: ARG002
        entries = await self._held_entries(reply.in_reply_to)
        message_at = len(entries)
        line = sources_line(reply.citations)
        if not line or not reply.text.endswith(line):
            # No citations, or a text that no longer ends with them (a handoff notice):
            # sent as it is, like on every platform.
            entries.append(("message", reply.text))
        else:
            listed = [{"title": s.title, "section": s.section} for s in reply.citations]
            entries.append(("message", reply.text.removesuffix(line)))
            entries.append(("sources", json.dumps(listed, ensure_ascii=False)))
        return (await self._append(reply.in_reply_to, entries))[message_at]

    async def finish(self, reply: Reply) -> None:
        """Mark the reply complete, so the waiting request returns."""
        entries = await self._held_entries(reply.in_reply_to)
        await self._append(reply.in_reply_to, [*entries, ("done", "")])

    def delta_sink(self, reply: Reply) -> OnDelta:
        """Where streamed model output goes while the answer is being written."""
        event_id = reply.in_reply_to
        throttle = Throttle(self._deltas_per_s)
        pieces: list[str] = []  # held back by the throttle

        def take() -> str:
            text = "".join(pieces)
            pieces.clear()
            return text

        async def write_held() -> None:
            if pieces:
                throttle.mark(self._clock())
                await self._append(event_id, [("delta", take())])

        def next_write_in() -> float | None:
            return throttle.wait(self._clock()) if pieces else None

        async def sink(piece: str) -> None:
            if piece == STREAM_RESTART:
                await self._stop_held(event_id)
                take()  # void, like the deltas before them
                await self._append(event_id, [("reset", "")])
                return
            pieces.append(piece)
            now = self._clock()
            if throttle.due(now):
                # This write carries what the later write held (it takes the pieces).
                text = await self._stop_held(event_id) + take()
                await self._append(event_id, [("delta", text)])
            elif event_id not in self._held:
                held = _HeldBack(write_held, next_write_in, take)
                self._held[event_id] = held
                held.task.add_done_callback(lambda _: self._forget(event_id, held))

        return sink

    def _forget(self, event_id: str, held: _HeldBack) -> None:
        if self._held.get(event_id) is held:
            del self._held[event_id]

    async def _stop_held(self, event_id: str) -> str:
        """Stop the later write of held deltas; what it had not written yet."""
        held = self._held.pop(event_id, None)
        return "" if held is None else await held.stop()

    async def _held_entries(self, event_id: str) -> list[tuple[str, str]]:
        """The held deltas as an entry to write first (in the same round trip)."""
        rest = await self._stop_held(event_id)
        return [("delta", rest)] if rest else []

    async def _append(self, event_id: str, entries: list[tuple[str, str]]) -> list[str]:
        """Append `entries` (kind, text) in order, in one round trip; their ids."""
        key = keys.webchat_stream(event_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, text in entries:
                pipe.xadd(key, {"kind": kind, "text": text}, maxlen=10_000)
            pipe.expire(key, keys.WEBCHAT_STREAM_TTL_S)
            *ids, _ = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


class _HeldBack:
    """Writes the deltas the throttle held back, when it allows, until none are left.
    Stopped, it hands back what it had not written (the caller writes it with what comes
    next, or drops it: a restart voids it). A write under way is waited for, not
    cancelled: an XADD cut off by cancelling may still reach Redis, after what comes next."""

    def __init__(
        self,
        write: Callable[[], Awaitable[None]],
        wait_s: Callable[[], float | None],
        take: Callable[[], str],
    ) -> None:
        self._write = write
        self._wait_s = wait_s  # seconds until the next write; None: nothing held
        self._take = take
        self._writing = False
        self._stopping = False
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping and (delay_s := self._wait_s()) is not None:
            await asyncio.sleep(delay_s)
            self._writing = True
            try:
                await self._write()
            except (RedisError, OSError) as exc:  # what comes next carries the words
                log.info("web delta write skipped: %s", exc)
                return
            finally:
                self._writing = False

    async def stop(self) -> str:
        self._stopping = True
        if not self._writing:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        return self._take()


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
