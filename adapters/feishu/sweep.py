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

import logging
from collections.abc import Mapping

import aiohttp
import redis.asyncio as aioredis

from adapters.feishu import cards
from adapters.feishu.streaming import FeishuStreamingAdapter
from bot.errors import BotError, PermanentError

log = logging.getLogger(__name__)

# The wording of the AI bot's and DingTalk's sweepers: the customer reads one voice.
CUT_NOTE = "（回答中断了，以上是已生成的部分。如需完整答复，请再发一次您的问题。）"
NOTHING_NOTE = "抱歉，这条消息没能及时回答，请再发一次您的问题。"
# No write for this long: the turn is dead. Above a redelivered turn's first write (the
# broker's 60 s visibility timeout plus the model's first words), and short enough that the
# card is ended inside its streaming window (600 s from creation) in all but long answers.
GRACE_S = 240.0


def closing_text(so_far: str) -> str:
    """What the card shows at the end of a turn that died."""
    so_far = so_far.strip()
    return f"{so_far}\n\n{CUT_NOTE}" if so_far else NOTHING_NOTE


async def sweep(
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    adapters: Mapping[str, FeishuStreamingAdapter],
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
            # Even a card with no message id on record: the worker may have died between
            # sending it and noting the id, and the card entity closes all the same.
            await adapter.end_card(http, event_id, card, text, CUT_NOTE)
        except PermanentError as exc:
            # Refused for good: the state still says swept, so a late turn stays quiet.
            log.warning("feishu %s: ending the card of %s refused: %s", app, event_id, exc)
        except BotError as exc:
            # Feishu down or busy: the next round tries again.
            await store.release_sweep(event_id)
            log.warning("feishu %s: ending the card of %s failed: %s", app, event_id, exc)
            continue
        await store.finish(event_id, text, cards.SWEPT)
        log.warning("feishu %s: ended the card of %s left open by a turn that died", app, event_id)
        ended += 1
    return ended
