"""A Redis failure in any step of a job is tried again, then requeued: never a task that
fails for good (Celery acknowledges those, and the message would be lost)."""

from __future__ import annotations

import pytest

from bot.domain import InboundMessage, Platform
from bot.errors import TransientError
from bot.pipeline import jobs
from tests.integration.private_redis import PrivateRedis


async def test_a_redis_failure_before_the_turn_is_transient_and_requeued(
    make_settings, open_runtime, private_redis: PrivateRedis
) -> None:
    # The steps before the turn (a remembered file, a transcript, a quote) read Redis too;
    # a pool with no free connection or a Redis going away fails them like the turn.
    rt = await open_runtime(make_settings(core={"redis_url": private_redis.url}))
    private_redis.kill()
    msg = InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", "运费多少")
    with pytest.raises(TransientError, match="redis unavailable"):
        await jobs._run(rt, msg, 1)
    with pytest.raises(jobs.RequeueError):
        await jobs.with_retries(lambda: jobs._run(rt, msg, 1), msg, delays=(0.01,))
