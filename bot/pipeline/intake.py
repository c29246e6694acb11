"""The web side of the queue: deduplicate on the platform's event id, ticket, enqueue.

The ticket step also notes a text message as pending for burst coalescing
(bot/pipeline/coalesce.py).

Nothing is acknowledged that is not safely queued: any failure here surfaces as
`IntakeUnavailableError` and the web process answers 503 so the platform retries.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from bot.broker import Publisher
from bot.domain import InboundMessage
from bot.pipeline import coalesce

log = logging.getLogger(__name__)

DEDUP_TTL_S = 48 * 3600  # longer than every platform's retry window (Feishu: about 7.1 h)
SEQ_TTL_S = 7 * 24 * 3600

# The turn ticket, and (for a text message) its entry in the conversation's burst set, in one step:
# a worker looking for a burst sees every ticketed text message (bot/pipeline/coalesce.py). KEYS:
# seq counter, burst set. ARGV: seq ttl, burst ttl, burst entry ("" for none).
_TICKET = """
local seq = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], seq, ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return seq
"""


class IntakeUnavailableError(Exception):
    """Redis or the broker could not take the message; the platform must retry."""


def dedup_key(msg: InboundMessage) -> str:
    return f"dedup:{msg.platform.value}:{msg.app}:{msg.event_id}"


async def accept(redis: aioredis.Redis, msg: InboundMessage, publisher: Publisher) -> bool:
    """Queue `msg` unless seen before; True when queued, False for a duplicate."""
    key = dedup_key(msg)
    try:
        if not await redis.set(key, "1", nx=True, ex=DEDUP_TTL_S):
            return False
    except aioredis.RedisError as exc:
        raise IntakeUnavailableError(f"redis: {type(exc).__name__}") from exc
    try:
        seq = await ticket(redis, msg)
        await asyncio.to_thread(publisher.handle_message, msg.to_json(), seq)
    except Exception as exc:
        # Forget the dedup key so the platform's retry is not taken for a duplicate.
        try:
            await redis.delete(key)
        except aioredis.RedisError:
            log.warning("could not clear dedup key for %s %s", msg.platform, msg.event_id)
        raise IntakeUnavailableError(f"queue: {type(exc).__name__}") from exc
    log.info("queued %s %s %s", msg.platform, msg.app, msg.event_id)
    return True


async def ticket(redis: aioredis.Redis, msg: InboundMessage) -> int:
    """The message's turn ticket in its conversation (1, 2, ...); notes it for coalescing."""
    seq = await redis.eval(  # type: ignore[misc]
        _TICKET,
        2,
        f"seq:{msg.conversation_key}",
        coalesce.burst_key(msg),
        SEQ_TTL_S,
        coalesce.PENDING_TTL_S,
        coalesce.pending_entry(msg),
    )
    return int(seq)
