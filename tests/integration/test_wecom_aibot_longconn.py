"""WeCom 智能机器人 long connection against the fake gateway, with real Redis as the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis

from adapters.wecom_aibot.adapter import stream_message
from adapters.wecom_aibot.longconn import AiBotWsClient
from adapters.wecom_aibot.outbox import outbox_key, push
from bot.domain import InboundMessage
from tests.fakes import wecom_aibot_ws
from tests.fakes.wecom_aibot_ws import AiBotGateway

APP = "lc-test"


def text_body(msgid: str, content: str, *, chatid: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "msgid": msgid,
        "aibotid": "aibot-fake",
        "chattype": "group" if chatid else "single",
        "from": {"userid": "zhangsan"},
        "msgtype": "text",
        "text": {"content": content},
    }
    if chatid:
        body["chatid"] = chatid
    return body


async def until(predicate: Any, within_s: float = 5.0) -> None:
    """Poll what the client side shows (its state has no event to wait on)."""
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[AiBotGateway, str]]:
    async with wecom_aibot_ws.serving() as found:
        yield found


@contextlib.asynccontextmanager
async def running(
    url: str, redis: aioredis.Redis, got: list[InboundMessage], **kw: Any
) -> AsyncIterator[AiBotWsClient]:
    async def on_message(msg: InboundMessage) -> None:
        got.append(msg)

    async with aiohttp.ClientSession() as http:
        client = AiBotWsClient(
            http=http,
            redis=redis,
            bot_id=kw.pop("bot_id", "aibot-fake"),
            secret=kw.pop("secret", "fake-secret"),
            on_message=on_message,
            ws_url=url,
            app=APP,
            backoff_base_s=0.05,
            backoff_cap_s=0.2,
            rng=random.Random(1),
            **kw,
        )
        task = asyncio.create_task(client.run())
        try:
            yield client
        finally:
            client.stop()
            async with asyncio.timeout(5):
                await task


async def test_message_in_streamed_answer_out_with_its_req_id(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    await aredis.delete(outbox_key(APP))
    got: list[InboundMessage] = []
    async with running(url, aredis, got) as client:
        await fake.wait_for(lambda: fake.subscribes == 1)
        req_id = await fake.callback(text_body("m-1", "@客服 订单到哪了", chatid="grp-1"))
        await until(lambda: bool(got))
        msg = got[0]
        assert msg.text == "订单到哪了"
        assert msg.conversation_id == "grp-1"
        assert msg.is_group
        assert msg.route["req_id"] == req_id
        sid = msg.route["stream_id"]
        # What a worker does: the text so far, then the whole answer with finish.
        await push(aredis, APP, req_id, stream_message(sid, "您的订单", finish=False))
        await push(aredis, APP, req_id, stream_message(sid, "您的订单已发货。", finish=True))
        await fake.wait_for(lambda: len(fake.responses) == 2)
        assert client.state.connected
    first, last = fake.responses
    assert {first["headers"]["req_id"], last["headers"]["req_id"]} == {req_id}
    assert first["body"]["stream"] == {"id": sid, "finish": False, "content": "您的订单"}
    assert last["body"]["stream"]["finish"] is True
    assert last["body"]["stream"]["content"] == "您的订单已发货。"
    assert await aredis.llen(outbox_key(APP)) == 0


async def test_bad_secret_is_refused_and_retried(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    async with running(url, aredis, [], secret="wrong") as client:
        await fake.wait_for(lambda: fake.refused >= 2)
        assert not client.state.connected
        assert client.state.failures >= 1
    assert fake.subscribes == 0


async def test_dropped_connection_reconnects_and_still_delivers(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    got: list[InboundMessage] = []
    async with running(url, aredis, got) as client:
        await fake.wait_for(lambda: fake.subscribes == 1)
        await fake.drop()
        await fake.wait_for(lambda: fake.subscribes == 2 and bool(fake.sockets))
        await fake.callback(text_body("m-2", "还在吗"))
        await until(lambda: bool(got))
        assert got[0].text == "还在吗"
        assert not got[0].is_group
        assert client.state.connects == 2


async def test_unanswered_heartbeat_means_reconnect(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    fake.answer_pings = False
    async with running(url, aredis, [], heartbeat_s=0.1, liveness_s=0.4) as client:
        await fake.wait_for(lambda: fake.subscribes >= 2)
        assert fake.pings >= 2
        await until(lambda: client.state.connects >= 2)


async def test_a_second_subscriber_replaces_the_first(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    async with running(url, aredis, []) as first:
        await fake.wait_for(lambda: fake.subscribes == 1)
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            await ws.send_json(
                {
                    "cmd": "aibot_subscribe",
                    "headers": {"req_id": "other"},
                    "body": {"bot_id": "aibot-fake", "secret": "fake-secret"},
                }
            )
            ack = await ws.receive_json(timeout=5)
            assert ack["errcode"] == 0
            await fake.wait_for(lambda: fake.subscribes >= 3)
        # The first client was told (disconnected_event), went away, and came back.
        await until(lambda: first.state.connects >= 2)


async def test_enter_chat_is_welcomed_under_its_req_id(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    got: list[InboundMessage] = []
    async with running(url, aredis, got, welcome_text="您好，请问有什么可以帮您？"):
        await fake.wait_for(lambda: fake.subscribes == 1)
        req_id = await fake.event("enter_chat")
        await fake.wait_for(lambda: bool(fake.welcomes))
    (welcome,) = fake.welcomes
    assert welcome["headers"]["req_id"] == req_id
    assert welcome["body"] == {"msgtype": "text", "text": {"content": "您好，请问有什么可以帮您？"}}
    assert got == []  # nothing queued for the agent


async def test_feedback_is_queued_as_a_notice(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis
) -> None:
    fake, url = gateway
    got: list[InboundMessage] = []
    async with running(url, aredis, got):
        await fake.wait_for(lambda: fake.subscribes == 1)
        await fake.event("feedback_event", id="m-rated", type=2, content="答非所问")
        await until(lambda: bool(got))
    (notice,) = got
    assert notice.event == "feedback_event"
    assert notice.event_key == "down"
    assert notice.route["rated"] == "m-rated"
    assert notice.conversation_id == "event:zhangsan"


async def test_a_frame_pushed_as_the_holder_is_cancelled_is_kept_for_the_next(
    gateway: tuple[AiBotGateway, str], aredis: aioredis.Redis, sync_redis: redis.Redis
) -> None:
    """The lease lost or the process stopping cancels the holder while its BLPOP waits: a
    frame Redis hands that BLPOP then goes back to the outbox, and the holder ends soon."""
    fake, url = gateway
    key = outbox_key(APP)
    await aredis.delete(key)
    got: list[InboundMessage] = []
    async with aiohttp.ClientSession() as http:
        client = AiBotWsClient(
            http=http,
            redis=aredis,
            bot_id="aibot-fake",
            secret="fake-secret",
            on_message=got.append,  # type: ignore[arg-type]
            ws_url=url,
            app=APP,
            rng=random.Random(1),
        )
        task = asyncio.create_task(client.run())
        await fake.wait_for(lambda: fake.subscribes == 1)
        await asyncio.sleep(0.2)  # the holder is waiting in BLPOP now
        # Cancelled, and before the loop runs again Redis hands the frame to that BLPOP (a
        # blocking client pushes it): the reply is on the socket when the cancel lands.
        task.cancel()
        frame = {"cmd": "aibot_respond_msg", "headers": {"req_id": "req-late"}, "body": {}}
        sync_redis.rpush(key, json.dumps(frame))
        async with asyncio.timeout(5):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # Sent before the cancel took, or back in the outbox: never both, never neither.
    assert len(fake.responses) + await aredis.llen(key) == 1
    await aredis.delete(key)


class _CancelTurnedTimeout(aioredis.Redis):
    """Redis as Python 3.11 can show it: a cancel that lands just as a read times out comes
    back as a timeout (asyncio.timeout's race), so the caller sees a RedisError instead.
    The deadline check's ZRANGEBYSCORE is slow here, so the cancel lands in it."""

    checking = asyncio.Event()

    async def zrangebyscore(self, *args: Any, **kwargs: Any) -> Any:
        self.checking.set()
        try:
            await asyncio.sleep(0.3)
            return await super().zrangebyscore(*args, **kwargs)
        except asyncio.CancelledError:
            raise aioredis.TimeoutError("Timeout reading from socket") from None

    async def blpop(self, keys: Any, *_: Any, **__: Any) -> Any:
        return await super().blpop(keys, timeout=0.01)  # the deadline check runs often


async def test_a_holder_whose_cancel_comes_back_as_a_timeout_still_ends(
    gateway: tuple[AiBotGateway, str], redis_url: str
) -> None:
    fake, url = gateway
    odd = _CancelTurnedTimeout.from_url(redis_url)
    odd.checking = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            client = AiBotWsClient(
                http=http,
                redis=odd,
                bot_id="aibot-fake",
                secret="fake-secret",
                on_message=[].append,  # type: ignore[arg-type]
                ws_url=url,
                app=APP,
                window_check_s=0,
                rng=random.Random(1),
            )
            task = asyncio.create_task(client.run())
            await fake.wait_for(lambda: fake.subscribes == 1)
            odd.checking.clear()
            await odd.checking.wait()  # the drain is in its deadline check now
            task.cancel()
            async with asyncio.timeout(5):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await odd.aclose()
