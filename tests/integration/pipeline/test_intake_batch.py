"""Intake under a burst: the scripts of messages accepted together share one pipeline, and
each message still gets its own ticket, duplicate verdict or error."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from bot import keys
from bot.domain import InboundMessage, Platform
from bot.pipeline import intake
from tests.integration.private_redis import PrivateRedis


def _msg(event_id: str, conversation: str, text: str = "运费多少") -> InboundMessage:
    return InboundMessage(
        platform=Platform.WEB,
        app="default",
        event_id=event_id,
        conversation_id=conversation,
        sender_id=conversation,
        text=text,
    )


async def _connections(client: aioredis.Redis, name: str) -> int:
    listed = await client.client_list()
    return sum(1 for c in listed if c.get("name") == name)


async def test_a_burst_shares_round_trips_and_keeps_every_ticket(redis_url) -> None:
    client = aioredis.Redis.from_url(redis_url, client_name="intake-burst")
    try:
        msgs = [_msg(f"e{i}", f"c{i % 20}") for i in range(200)]
        again = [_msg(f"e{i}", f"c{i % 20}") for i in range(0, 200, 10)]  # platform retries
        seqs = await asyncio.gather(*(intake.accept(client, m) for m in msgs + again))
        # Without batching, 220 concurrent commands open a connection each.
        assert await _connections(client, "intake-burst") <= 2
        first, retried = seqs[:200], seqs[200:]
        # Past BATCH_LIMIT the scripts go as two pipelines on two connections, and the
        # second (holding the retries) may reach Redis first: then the retry is queued and
        # the first delivery is the duplicate. Either way each message is queued once.
        for j, retry in enumerate(retried):
            assert (first[10 * j] > 0) != (retry > 0)
        tickets_of = {m.event_id: 0 for m in msgs}
        for m, seq in zip(msgs + again, seqs, strict=True):
            tickets_of[m.event_id] = max(tickets_of[m.event_id], seq)
        for conv in range(20):
            tickets = sorted(tickets_of[f"e{i}"] for i in range(conv, 200, 20))
            assert tickets == list(range(1, 11))
        queued = await client.lrange(keys.QUEUE, 0, -1)
        assert len(queued) == 200
        ids = {json.loads(json.loads(m)["body"])[0][0]["event_id"] for m in queued}
        assert ids == {f"e{i}" for i in range(200)}
    finally:
        await client.aclose()


async def test_one_failing_script_fails_only_its_message(redis_url, sync_redis) -> None:
    broken = _msg("bad", "broken")
    sync_redis.hset(keys.sequence(broken.conversation_key), "x", "1")  # INCR fails: WRONGTYPE
    client = aioredis.Redis.from_url(redis_url)
    try:
        results = await asyncio.gather(
            *(intake.accept(client, m) for m in [_msg("a", "ok1"), broken, _msg("b", "ok2")]),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], intake.IntakeUnavailableError)
    assert sync_redis.llen(keys.QUEUE) == 2


async def test_a_waiter_that_leaves_does_not_lose_its_message(redis_url, sync_redis) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        tasks = [asyncio.create_task(intake.accept(client, _msg(f"e{i}", "c"))) for i in range(5)]
        await asyncio.sleep(0)  # all five submitted to the same batch
        tasks[2].cancel()  # e.g. the platform closed the connection
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.2)
    finally:
        await client.aclose()
    assert isinstance(done[2], asyncio.CancelledError)
    assert sorted(x for x in done if isinstance(x, int)) == [1, 2, 4, 5]
    assert sync_redis.llen(keys.QUEUE) == 5  # the cancelled one was queued all the same


async def test_a_fresh_redis_without_the_script_takes_the_whole_batch(
    private_redis: PrivateRedis,
) -> None:
    client = aioredis.Redis.from_url(private_redis.url)
    try:
        seqs = await asyncio.gather(*(intake.accept(client, _msg(f"e{i}", "c")) for i in range(8)))
        assert sorted(seqs) == list(range(1, 9))
        await client.script_flush()  # as after a Redis restart
        more = await asyncio.gather(*(intake.accept(client, _msg(f"f{i}", "c")) for i in range(8)))
        assert sorted(more) == list(range(9, 17))
        assert await client.llen(keys.QUEUE) == 16
    finally:
        await client.aclose()


async def test_redis_down_fails_every_message_of_the_batch_quickly(
    private_redis: PrivateRedis,
) -> None:
    client = aioredis.Redis.from_url(private_redis.url, socket_connect_timeout=1)
    private_redis.kill()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(intake.accept(client, _msg(f"e{i}", "c")) for i in range(10)),
                return_exceptions=True,
            ),
            timeout=10,
        )
    finally:
        await client.aclose()
    assert all(isinstance(r, intake.IntakeUnavailableError) for r in results), results


@pytest.mark.parametrize("count", [1, intake.BATCH_LIMIT + 5])
async def test_a_lone_message_and_an_oversize_batch_are_queued(
    redis_url, sync_redis, count: int
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        seqs = await asyncio.gather(
            *(intake.accept(client, _msg(f"e{i}", f"c{i}")) for i in range(count))
        )
    finally:
        await client.aclose()
    assert seqs == [1] * count
    assert sync_redis.llen(keys.QUEUE) == count
