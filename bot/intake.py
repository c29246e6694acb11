"""The web side of the queue: deduplicate on the platform's event id, ticket, enqueue.

Nothing is acknowledged that is not safely queued: any failure here surfaces as
`IntakeUnavailableError` and the web process answers 503 so the platform retries.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from bot.domain import InboundMessage
from workers.celery_app import publish

log = logging.getLogger(__name__)

DEDUP_TTL_S = 48 * 3600  # longer than every platform's retry window (Feishu: about 7.1 h)
SEQ_TTL_S = 7 * 24 * 3600


class IntakeUnavailableError(Exception):
    """Redis or the broker could not take the message; the platform must retry."""


def dedup_key(msg: InboundMessage) -> str:
    return f"dedup:{msg.platform.value}:{msg.app}:{msg.event_id}"


async def accept(redis: aioredis.Redis, msg: InboundMessage) -> bool:
    """Queue `msg` unless seen before; True when queued, False for a duplicate."""
    key = dedup_key(msg)
    try:
        if not await redis.set(key, "1", nx=True, ex=DEDUP_TTL_S):
            return False
    except aioredis.RedisError as exc:
        raise IntakeUnavailableError(f"redis: {type(exc).__name__}") from exc
    try:
        seq_key = f"seq:{msg.conversation_key}"
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(seq_key)
            pipe.expire(seq_key, SEQ_TTL_S)
            seq = int((await pipe.execute())[0])
        await asyncio.to_thread(publish, msg.to_json(), seq)
    except Exception as exc:
        # Forget the dedup key so the platform's retry is not taken for a duplicate.
        try:
            await redis.delete(key)
        except aioredis.RedisError:
            log.warning("could not clear dedup key for %s %s", msg.platform, msg.event_id)
        raise IntakeUnavailableError(f"queue: {type(exc).__name__}") from exc
    log.info("queued %s %s %s", msg.platform, msg.app, msg.event_id)
    return True
