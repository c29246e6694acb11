"""Feishu streaming cards (CardKit): the card bodies, the update throttle and each card's state.

A streamed answer is one card entity per message (docs/protocols/feishu.md#streaming-cards):
its state lives in Redis (bot/keys.py `feishu_card`) so a redelivered turn after a worker
crash continues the same card, with `sequence` numbers that only grow (HINCRBY), instead of
sending a second card. Fields: `card_id`, `message_id` (the reply that shows it, once sent),
`seq` (the last sequence used), `text` (what the card shows so far), `deadline` (when Feishu
ends streaming mode by itself, epoch seconds), `status` (open → done, or swept) and `final`.
The open cards are also in a sorted set by their last write (bot/keys.py FEISHU_OPEN_CARDS),
so the sweeper (adapters/feishu/sweep.py) finds those a dead turn left, without a SCAN.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from adapters import cards as shared
from bot import keys

OPEN = "open"
DONE = "done"
SWEPT = "swept"  # finished by the sweeper: the turn behind it died
ELEMENT_ID = "answer"  # the one markdown element the answer streams into
# Streaming mode ends by itself 10 minutes after it was switched on.
STREAMING_WINDOW_S = 600


def card_json(text: str) -> str:
    """A card JSON 2.0 body with streaming mode on and one markdown element (a JSON string)."""
    card = {
        "schema": "2.0",
        "config": {
            "streaming_mode": True,
            "update_multi": True,  # required in streaming mode (300302)
            # The chat list shows this while streaming, instead of the default "生成中…".
            "summary": {"content": "正在回复…"},
        },
        "body": {"elements": [{"tag": "markdown", "element_id": ELEMENT_ID, "content": text}]},
    }
    return json.dumps(card, ensure_ascii=False)


def closing_settings() -> str:
    """The settings body that ends streaming mode (a JSON string, as the API wants it)."""
    return json.dumps({"config": {"streaming_mode": False}})


@dataclass(frozen=True, slots=True)
class Card:
    """One message's card as Redis holds it."""

    card_id: str
    message_id: str
    seq: int
    text: str
    status: str
    final: str
    deadline: float

    @property
    def done(self) -> bool:
        return self.status in (DONE, SWEPT)

    @property
    def swept(self) -> bool:
        """Finished by the sweeper: the message has its one answer (the text then a note)."""
        return self.status == SWEPT


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


_FIELDS = ("card_id", "message_id", "seq", "text", "status", "final", "deadline")


class CardStore(shared.CardStates):
    """The streaming cards of one app, and whether the app may use cards at all."""

    open_set = keys.FEISHU_OPEN_CARDS
    ttl_s = keys.FEISHU_CARD_TTL_S
    off_ttl_s = keys.FEISHU_CARDS_OFF_TTL_S

    def _key(self, event_id: str) -> str:
        return keys.feishu_card(self._app, event_id)

    def _off_key(self) -> str:
        return keys.feishu_cards_off(self._app)

    async def get(self, event_id: str) -> Card | None:
        values = [_text(v) for v in await self._redis.hmget(self._key(event_id), *_FIELDS)]
        card_id, message_id, seq, text, status, final, deadline = values
        if not card_id:
            return None
        return Card(
            card_id=card_id,
            message_id=message_id,
            seq=int(seq or 0),
            text=text,
            status=status or OPEN,
            final=final,
            deadline=float(deadline or 0),
        )

    async def created(
        self, event_id: str, card_id: str, text: str, *, now: float | None = None
    ) -> str:
        """Remember a new card, created showing `text`; return the message's card (the first
        one wins a race)."""
        key = self._key(event_id)
        deadline = (time.time() if now is None else now) + STREAMING_WINDOW_S
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "card_id", card_id)
            pipe.hsetnx(key, "status", OPEN)
            pipe.hsetnx(key, "deadline", f"{deadline:.0f}")
            pipe.hsetnx(key, "text", text)
            pipe.hget(key, "card_id")
            pipe.expire(key, keys.FEISHU_CARD_TTL_S)
            pipe.zadd(self.open_set, {self._member(event_id): time.time()})
            *_, stored, _, _ = await pipe.execute()
        return _text(stored)

    async def sent(self, event_id: str, message_id: str) -> None:
        await self._redis.hset(self._key(event_id), "message_id", message_id)

    async def next_sequence(self, event_id: str) -> int:
        """The next `sequence` for this card: strictly above every one used before, even by a
        worker that died mid-stream."""
        return int(await self._redis.hincrby(self._key(event_id), "seq", 1))


async def idle(redis: aioredis.Redis, before: float, limit: int = 100) -> list[tuple[str, str]]:
    """(app, event id) of open cards last written before `before`, oldest first: what the
    sweeper ends. Members whose state expired are dropped on the way."""
    return await shared.idle(redis, keys.FEISHU_OPEN_CARDS, keys.feishu_card, before, limit)
