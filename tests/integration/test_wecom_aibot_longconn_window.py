"""WeCom 智能机器人 long connection past the req_id's life: the holder closes a stream still
open at its deadline under its req_id, an answer that comes later goes to the chat as
aibot_send_msg, and a turn that never answers gets the sweeper's note the same way. Real
Redis, the fake gateway (which refuses answers under an expired req_id)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters.cards import CUT_NOTE
from adapters.wecom_aibot import sweep
from adapters.wecom_aibot.adapter import SEND_MSG, WeComAiBotAdapter
from adapters.wecom_aibot.longconn import FOLLOWS_NOTE, AiBotWsClient
from adapters.wecom_aibot.outbox import outbox_key
from bot.domain import InboundMessage, Reply
from tests.fakes.wecom_aibot_ws import AiBotGateway
from tests.integration.test_wecom_aibot_longconn import APP, gateway, running, text_body, until

__all__ = ["gateway"]  # the fixture this module takes from the long-connection tests


class Clock:
    """The one clock of the holder and the worker, which the test moves."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _worker(redis: aioredis.Redis, clock: Clock) -> WeComAiBotAdapter:
    return WeComAiBotAdapter(mode="longconn", app=APP, redis=redis, clock=clock)


@dataclass
class Held:
    """A message whose turn streamed some words, then let its deadline pass."""

    msg: InboundMessage
    client: AiBotWsClient
    adapter: WeComAiBotAdapter
    clock: Clock


@contextlib.asynccontextmanager
async def _past_deadline(
    fake: AiBotGateway, url: str, redis: aioredis.Redis, text: str
) -> AsyncIterator[Held]:
    """A group message whose turn streamed `text`, then went quiet past the message's
    deadline (the req_id's life less a margin); the holder has closed its stream."""
    await redis.delete(outbox_key(APP))
    clock = Clock()
    adapter = _worker(redis, clock)
    got: list[InboundMessage] = []
    async with running(url, redis, got, clock=clock, window_check_s=0.05) as client:
        await fake.wait_for(lambda: fake.subscribes == 1)
        await fake.callback(text_body("m-late", "@客服 订单到哪了", chatid="grp-1"))
        await until(lambda: bool(got))
        msg = got[0]
        await adapter.delta_sink(Reply.to(msg, ""))(text)
        await fake.wait_for(lambda: len(fake.responses) == 1)
        clock.now = float(msg.route["deadline"]) + 1
        await fake.wait_for(lambda: len(fake.responses) == 2)
        yield Held(msg, client, adapter, clock)


def _frames(fake: AiBotGateway) -> list[dict[str, Any]]:
    return [f["body"]["stream"] for f in fake.responses]


async def test_a_stream_open_at_its_deadline_is_closed_once_and_the_answer_follows(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    async with _past_deadline(fake, url, aredis, "您的订单") as held:
        msg, adapter = held.msg, held.adapter
        assert await held.client.close_expiring() == 0  # once
        # The worker's further words go nowhere: its stream is closed.
        await adapter.delta_sink(Reply.to(msg, ""))("已发")
        # The answer arrives: it goes to the group as a message of its own.
        async with aiohttp.ClientSession() as http:
            sent = await adapter.send(Reply.to(msg, "您的订单已发货。"), http)
        await fake.wait_for(lambda: len(fake.sent) == 1)
    assert sent == SEND_MSG
    req_id = msg.route["req_id"]
    assert fake.responses[-1]["headers"]["req_id"] == req_id
    assert _frames(fake)[-1]["finish"] is True
    assert _frames(fake)[-1]["content"] == f"您的订单\n\n{FOLLOWS_NOTE}"
    assert len(fake.responses) == 2
    assert fake.refusals == []
    (message,) = fake.sent
    assert message["body"] == {
        "chatid": "grp-1",
        "chat_type": 2,
        "msgtype": "markdown",
        "markdown": {"content": "您的订单已发货。"},
    }
    assert message["headers"]["req_id"] != req_id
    # Answered: the sweeper has nothing to add.
    later = float(msg.route["deadline"]) + sweep.GRACE_S + 1
    async with aiohttp.ClientSession() as http:
        assert await sweep.sweep(aredis, http, now=later) == 0


async def test_a_dead_turns_stream_is_closed_then_noted_in_the_chat_once(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    async with _past_deadline(fake, url, aredis, "退货请在") as held:
        # Nothing more comes from the turn: the sweeper's round says so in the chat.
        later = float(held.msg.route["deadline"]) + sweep.GRACE_S + 1
        async with aiohttp.ClientSession() as http:
            assert await sweep.sweep(aredis, http, now=later) == 1
            assert await sweep.sweep(aredis, http, now=later) == 0
            await fake.wait_for(lambda: len(fake.sent) == 1)
            # A turn that comes back after all adds no second ending.
            held.clock.now = later
            assert await held.adapter.send(Reply.to(held.msg, "退货请在订单页申请。"), http)
        await asyncio.sleep(0.3)  # the holder would have sent anything queued by now
    assert [m["body"]["markdown"]["content"] for m in fake.sent] == [f"退货请在\n\n{CUT_NOTE}"]
    assert fake.sent[0]["body"]["chatid"] == "grp-1"


async def test_the_gateway_refuses_answers_under_an_expired_req_id(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    # Why the holder acts before the deadline: after it, the stream cannot be closed.
    fake, url = gateway
    await aredis.delete(outbox_key(APP))
    clock = Clock()
    got: list[InboundMessage] = []
    async with running(url, aredis, got, clock=clock, window_check_s=0.05):
        await fake.wait_for(lambda: fake.subscribes == 1)
        req_id = await fake.callback(text_body("m-exp", "在吗"))
        await until(lambda: bool(got))
        fake.expire(req_id)
        adapter = _worker(aredis, clock)
        await adapter.delta_sink(Reply.to(got[0], ""))("在的")
        await fake.wait_for(lambda: bool(fake.refusals))
    assert fake.responses == []
    assert fake.refusals[0]["headers"]["req_id"] == req_id
