"""The passive-reply handoff (bot/pipeline/passive.py) against a real Redis: exactly one delivery
path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from bot import keys
from bot.domain import InboundMessage, Platform
from bot.pipeline import passive


def _msg(event_id: str = "m1") -> InboundMessage:
    return InboundMessage(
        platform=Platform.WECHAT_MP,
        app="default",
        event_id=event_id,
        conversation_id="oUser",
        sender_id="oUser",
        text="hi",
        sent_at=datetime.now(UTC),
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_nobody_waiting_means_active_and_the_decision_sticks(redis) -> None:
    msg = _msg()
    assert await passive.offer(redis, msg, "answer") == passive.ACTIVE
    # A redelivered task, or a later retry, sees the same decision.
    assert await passive.offer(redis, msg, "answer") == passive.ACTIVE
    started = time.monotonic()
    result = await passive.wait(redis, msg, wait_s=2, tries=3)
    assert result.text is None
    assert not result.hold
    assert time.monotonic() - started < 1.0  # at once, not after wait_s=2


async def test_a_waiting_request_gets_the_text(redis) -> None:
    msg = _msg()
    waiter = asyncio.create_task(passive.wait(redis, msg, wait_s=3, tries=3))
    await asyncio.sleep(0.3)
    assert await passive.offer(redis, msg, "answer") == passive.PASSIVE
    result = await waiter
    assert (result.text, result.attempt) == ("answer", 1)
    assert await passive.offer(redis, msg, "answer") == passive.PASSIVE
    # A retry after the passive reply went out waits for nothing.
    again = await passive.wait(redis, msg, wait_s=3, tries=3)
    assert (again.text, again.attempt, again.hold) == (None, 2, False)


async def test_a_long_answer_is_never_passive(redis) -> None:
    msg = _msg()
    waiter = asyncio.create_task(passive.wait(redis, msg, wait_s=1, tries=1))
    await asyncio.sleep(0.2)
    assert await passive.offer(redis, msg, None) == passive.ACTIVE
    result = await waiter
    assert result.text is None
    assert not result.hold


async def test_timeouts_hold_before_the_last_try_and_not_on_it(redis) -> None:
    msg = _msg()
    holds = [(await passive.wait(redis, msg, wait_s=0.2, tries=3)).hold for _ in range(3)]
    assert holds == [True, True, False]
    # Nobody waits any more: the worker goes through the platform's API.
    assert await passive.offer(redis, msg, "answer") == passive.ACTIVE


async def test_handoff_is_exactly_once_under_races(redis) -> None:
    """Worker and a giving-up waiter racing many times: the text is never lost or doubled."""
    for i in range(200):
        msg = _msg(f"race-{i}")
        waiter = asyncio.create_task(passive.wait(redis, msg, wait_s=0.01 * (i % 3), tries=3))
        await asyncio.sleep(0.001 * (i % 7))
        how = await passive.offer(redis, msg, "answer")
        result = await waiter
        delivered = (result.text == "answer") + (how == passive.ACTIVE)
        assert delivered == 1, (i, how, result)


async def test_an_active_claim_wakes_the_waiters_at_once(redis) -> None:
    msg = _msg()
    waiters = [asyncio.create_task(passive.wait(redis, msg, wait_s=3, tries=3)) for _ in range(2)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert await passive.offer(redis, msg, None) == passive.ACTIVE
    results = await asyncio.gather(*waiters)
    assert time.monotonic() - started < 1.5  # woken, not after wait_s=3
    assert [(r.text, r.hold) for r in results] == [(None, False), (None, False)]
    assert await redis.llen(keys.passive_keys(msg)[2]) == 0


# --- deferred answers (no customer-service API) put in front of the next passive reply -------


async def _defer(redis, app: str, openid: str, question: str, text: str) -> None:
    from adapters.wechat_mp.limits import CustomSendLimits

    await CustomSendLimits(redis, app).defer(openid, question, text)


async def test_pending_key_is_the_one_the_mp_adapter_writes() -> None:
    from adapters.wechat_mp.limits import pending_key

    assert passive.pending_key(_msg()) == pending_key("default", "oUser")


async def test_deferred_answers_lead_the_next_passive_reply_once(redis) -> None:
    await _defer(redis, "default", "oUser", "怎么退货", "七天内可退。")
    await _defer(redis, "default", "oUser", "", "第二个回答")
    msg = _msg("m-next")
    waiter = asyncio.create_task(passive.wait(redis, msg, wait_s=3, tries=3))
    await asyncio.sleep(0.2)
    assert await passive.offer(redis, msg, "新问题的回答") == passive.PASSIVE
    result = await waiter
    assert result.text == (
        "您之前的问题：“怎么退货”的回复如下：\n七天内可退。\n\n"
        "您之前的消息的回复如下：\n第二个回答\n\n新问题的回答"
    )
    assert await redis.llen(passive.pending_key(msg)) == 0
    # Nobody waiting: the deferred answers stay for a later message.
    await _defer(redis, "default", "oUser", "发票", "可以开。")
    assert await passive.offer(redis, _msg("m-3"), "x") == passive.ACTIVE
    assert await redis.llen(passive.pending_key(msg)) == 1


def test_compose_carries_the_new_answer_when_both_do_not_fit() -> None:
    old = {"q": "长问题", "text": "旧" * 600}  # 1800 bytes
    text, carried, carry = passive.compose([old], "新" * 300, "新问题")
    assert text.startswith("您之前的问题：“长问题”的回复如下：\n旧")
    assert carried == 1
    assert '"q": "新问题"' in carry
    # Fitting ones are all carried, in order, the new answer last.
    small = [{"q": "a", "text": "1"}, {"q": "b", "text": "2"}]
    assert passive.compose(small, "3", "c") == (
        "您之前的问题：“a”的回复如下：\n1\n\n您之前的问题：“b”的回复如下：\n2\n\n3",
        2,
        "",
    )
