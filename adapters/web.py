"""The web chat channel: replies go to a Redis stream the waiting HTTP request reads.

Stream `webchat:{event_id}` carries events `delta` (a streamed piece of text), `reset`
(the deltas so far are void: a fallback model starts the answer again), `message`
(one complete reply part), `sources` (the documents the answer drew on, as JSON
`[{"title", "section"}]`: the page lists them under the answer, so the message leaves out
the plain-text line other platforms get) and `done`. Both JSON and SSE answers of
`/api/chat` read it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bot import keys
from bot.domain import STREAM_RESTART, OnDelta, Platform, Reply, sources_line

MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class WebEvent:
    kind: str  # "delta", "reset", "message", "sources" or "done"
    text: str = ""


class WebSender:
    """Sends replies of the web channel by appending them to the request's stream."""

    platform = Platform.WEB

    def __init__(self, redis: aioredis.Redis, app: str = "default") -> None:
        self._redis = redis
        self.app = app

    def split(self, text: str) -> list[str]:
        return [text[i : i + MAX_TEXT_CHARS] for i in range(0, len(text), MAX_TEXT_CHARS)] or [""]

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:  # noqa: ARG002
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
        await self._append(reply.in_reply_to, "done", "")

    def delta_sink(self, reply: Reply) -> OnDelta:
        """Where streamed model output goes while the answer is being written."""

        async def sink(piece: str) -> None:
            if piece == STREAM_RESTART:
                await self._append(reply.in_reply_to, "reset", "")
            else:
                await self._append(reply.in_reply_to, "delta", piece)

        return sink

    async def _append(self, event_id: str, kind: str, text: str) -> str:
        key = keys.webchat_stream(event_id)
        async with self._redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.xadd(key, {"kind": kind, "text": text}, maxlen=10_000)
            pipe.expire(key, keys.WEBCHAT_STREAM_TTL_S)
            entry_id, _ = await pipe.execute()
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


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
