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

import logging
from collections.abc import Mapping

import aiohttp
import redis.asyncio as aioredis

from adapters.dingtalk import cards
from adapters.dingtalk.streaming import DingTalkCardAdapter
from bot.errors import BotError

log = logging.getLogger(__name__)

CUT_NOTE = "（回答中断了，以上是已生成的部分。如需完整答复，请再发一次您的问题。）"
NOTHING_NOTE = "抱歉，这条消息没能及时回答，请再发一次您的问题。"
# No write for this long: the turn is dead (above the agent's deadline plus the broker's
# redelivery, as for the AI bot's streams).
GRACE_S = 600.0


def closing_text(so_far: str) -> str:
    """What the member sees at the end of a card whose turn died."""
    so_far = so_far.strip()
    return f"{so_far}\n\n{CUT_NOTE}" if so_far else NOTHING_NOTE


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapters: Mapping[str, DingTalkCardAdapter],
    *,
    now: float,
    grace_s: float = GRACE_S,
    limit: int = 100,
) -> int:
    """End the cards with no write for `grace_s`; how many were ended."""
    ended = 0
    for app, event_id in await cards.idle(redis, now - grace_s, limit):
        adapter = adapters.get(app)
        if adapter is None:
            continue  # an app this process does not have (yet): another round, or worker
        store = cards.CardStore(redis, app)
        if not await store.claim_for_sweep(event_id):
            continue  # another worker's sweeper has it
        card = await store.get(event_id)
        if card is None or card.done:
            continue  # finished between the listing and the claim
        text = closing_text(card.text)
        try:
            await adapter.end_card(http, card.out_track_id, text, failed=True)
        except BotError as exc:
            # A card that never came to exist (pending) refuses too: nothing to end.
            log.warning("dingtalk %s: ending the card of %s failed: %s", app, event_id, exc)
        await store.finish(event_id, text, cards.SWEPT)
        log.warning(
            "dingtalk %s: ended the card of %s left open by a turn that died", app, event_id
        )
        ended += 1
    return ended
