"""The DingTalk card sweeper: ends the AI cards whose turn died, so none stays "输入中".

A card is open from its first words until the worker finishes it (adapter.send) or ends it
unanswered (adapter.finish). A worker killed mid-turn is covered by the broker: the message
comes back and the next worker finishes the same card (adapters/dingtalk/streaming.py). What
is left is a turn that never ends: failed for good, or its message lost. Its card has had no
write for long past any turn's deadline: the sweeper, run periodically by the workers
(bot/runtime.py), ends it with the text so far and a short note (flowStatus FAILED), and
marks it swept so a turn that comes back late never adds a second answer.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import redis.asyncio as aioredis

from adapters import cards as shared
from adapters.cards import CUT_NOTE, NOTHING_NOTE, closing_text
from adapters.dingtalk import cards
from adapters.dingtalk.streaming import DingTalkCardAdapter

__all__ = ["CUT_NOTE", "GRACE_S", "NOTHING_NOTE", "closing_text", "sweep"]

# No write for this long: the turn is dead (above the agent's deadline plus the broker's
# redelivery, as for the AI bot's streams).
GRACE_S = 600.0


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapters: Mapping[str, DingTalkCardAdapter],
    *,
    now: float,
    grace_s: float = GRACE_S,
    limit: int = 100,
) -> int:
    """End the cards with no write for `grace_s`; how many were ended. A card DingTalk does
    not end (one that never came to exist refuses too) is marked swept all the same."""

    def store(app: str) -> cards.CardStore | None:
        return cards.CardStore(redis, app) if app in adapters else None

    async def end(app: str, _event_id: str, card: cards.Card, text: str) -> None:
        await adapters[app].end_card(http, card.out_track_id, text, failed=True)

    found = await cards.idle(redis, now - grace_s, limit)
    return await shared.sweep_open(
        found, store, end, what="dingtalk card", swept=cards.SWEPT, retry_when_down=False
    )
