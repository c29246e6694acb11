""" "Something changed in conversation N": a Redis pub/sub signal the console's open pages
listen to (server-sent events), so an agent sees a customer's message the moment it is
stored instead of at the next poll. Best effort: a lost signal costs only that moment,
the page's slow poll still catches up."""

from __future__ import annotations

import contextlib
import logging

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from bot import keys

log = logging.getLogger(__name__)


async def changed(redis: aioredis.Redis, conversation_id: int) -> None:
    """Tell the listeners of `conversation_id` that it has new messages."""
    with contextlib.suppress(aioredis.RedisError):
        await redis.publish(keys.live_conversation(conversation_id), "1")


def queue(pipe: Pipeline, conversation_id: int) -> None:
    """The same signal, queued on `pipe`: it goes with the caller's next round trip."""
    pipe.publish(keys.live_conversation(conversation_id), "1")
