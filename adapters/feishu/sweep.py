"""The Feishu card sweeper: ends the streaming cards whose turn died, so none stays "生成中".

A card is open from its first words until the worker finishes it (adapter.send) or closes
it unanswered (adapter.finish). A worker killed mid-turn is covered by the broker: the
message comes back and the next worker finishes the same card (adapters/feishu/streaming.py).
What is left is a turn that never ends: failed for good, or its message lost with a Redis
that lost data. Its card has had no write for longer than any live turn goes quiet: the
sweeper, run periodically by the workers (bot/runtime.py), ends it with the text so far and
a short note, switches streaming mode off, and marks it swept (one claim per card, so one
sweeper of the fleet does it) so a turn that comes back late never adds a second answer.

It acts well within Feishu's 10-minute streaming window, counted from the card's creation;
a card past it refuses the text, so it is closed as it stands and the note is a reply to it.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import redis.asyncio as aioredis

from adapters import cards as shared
from adapters.cards import CUT_NOTE, NOTHING_NOTE, closing_text
from adapters.feishu import cards
from adapters.feishu.streaming import FeishuStreamingAdapter

__all__ = ["CUT_NOTE", "GRACE_S", "NOTHING_NOTE", "closing_text", "sweep"]

# No write for this long: the turn is dead. Above a redelivered turn's first write (the
# broker's 60 s visibility timeout plus the model's first words), and short enough that the
# card is ended inside its streaming window (600 s from creation) in all but long answers.
GRACE_S = 240.0


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapters: Mapping[str, FeishuStreamingAdapter],
    *,
    now: float,
    grace_s: float = GRACE_S,
    limit: int = 100,
) -> int:
    """End the cards with no write for `grace_s`; how many were ended. Feishu down or busy
    leaves a card to the next round."""

    def store(app: str) -> cards.CardStore | None:
        return cards.CardStore(redis, app) if app in adapters else None

    async def end(app: str, event_id: str, card: cards.Card, text: str) -> None:
        # Even a card with no message id on record: the worker may have died between
        # sending it and noting the id, and the card entity closes all the same.
        await adapters[app].end_card(http, event_id, card, text, CUT_NOTE)

    found = await cards.idle(redis, now - grace_s, limit)
    return await shared.sweep_open(
        found, store, end, what="feishu card", swept=cards.SWEPT, retry_when_down=True
    )
