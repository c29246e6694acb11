"""WeComAiBotAdapter's stream state in real Redis and its response_url answers against the
fake endpoint: refreshes see the text grow, finish once, and late or second parts go
through the one-use response_url (docs/protocols/wecom-aibot.md)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from adapters.base import WebhookRequest, WebhookResult
from adapters.wecom_aibot import WeComAiBotAdapter, simulate
from adapters.wecom_aibot.adapter import stream_id_of
from adapters.wecom_aibot.state import StreamStore, overdue
from bot import keys
from bot.domain import STREAM_RESTART, Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from tests.fakes.base import serve
from tests.fakes.wecom_aibot_api import AiBotFakeState, make_aibot_app

TOKEN = "aibot-send-token"
KEY_TEXT = ("aibotSendTestKey1" * 3)[:43]


@pytest.fixture
def fake() -> Iterator[AiBotFakeState]:
    state = AiBotFakeState()
    with serve(make_aibot_app(state)) as url:
        state.base_url = url
        yield state


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def make(redis: aioredis.Redis, clock: Clock, **overrides: Any) -> WeComAiBotAdapter:
    return WeComAiBotAdapter(
        token=TOKEN,
        aes_key=KEY_TEXT,
        redis=redis,
        clock=clock,
        response_timeout_s=overrides.pop("response_timeout_s", 1.0),
        **overrides,
    )


def reply(text: str, *, msgid: str, response_url: str, deadline: float) -> Reply:
    return Reply(
        platform=Platform.WECOM_AIBOT,
        app="default",
        conversation_id="zhangsan",
        recipient_id="zhangsan",
        text=text,
        in_reply_to=msgid,
        route={
            "stream_id": stream_id_of("default", msgid),
            "response_url": response_url,
            "deadline": f"{deadline:.0f}",
        },
    )


async def refresh(bot: WeComAiBotAdapter, msgid: str) -> dict[str, Any]:
    sid = stream_id_of("default", msgid)
    request = WebhookRequest("POST", {"nonce": "n1"}, {}, b"")
    answered = await bot.refresh(request, WebhookResult(refresh=sid))
    return simulate.open_reply(answered.body, token=TOKEN, aes_key=KEY_TEXT)["stream"]


async def test_refresh_sees_the_text_grow_then_the_final_answer(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    out = reply("", msgid="m1", response_url=fake.issue(), deadline=clock.now + 300)
    assert await refresh(bot, "m1") == {
        "id": stream_id_of("default", "m1"),
        "finish": False,
        "content": "",
    }
    sink = bot.delta_sink(out)
    await sink("退货请")
    assert (await refresh(bot, "m1"))["content"] == "退货请"
    await sink(STREAM_RESTART)  # a fallback model starts again: the half answer goes
    assert (await refresh(bot, "m1"))["content"] == ""
    for piece in ("退货", "请在", "七天内"):
        await sink(piece)
    seen = await refresh(bot, "m1")
    assert (seen["content"], seen["finish"]) == ("退货请在七天内", False)
    assert await bot.send(out.with_text("退货请在七天内申请。"), http) == "stream:" + seen["id"]
    final = await refresh(bot, "m1")
    assert (final["content"], final["finish"]) == ("退货请在七天内申请。", True)
    # A resend of the same part (crash after finishing, before the sent marker) adds nothing.
    assert await bot.send(out.with_text("退货请在七天内申请。"), http) == "stream:" + seen["id"]
    assert fake.answers == []
    # The state a sweeper reads: status, deadline and the message's ids, with a TTL.
    meta = await aredis.hgetall(keys.aibot_stream("default", seen["id"]))
    assert meta[b"status"] == b"done"
    assert meta[b"event_id"] == b"m1"
    assert int(meta[b"deadline"]) == round(clock.now + 300)
    assert 0 < await aredis.ttl(keys.aibot_stream("default", seen["id"])) <= keys.AIBOT_STREAM_TTL_S


async def test_a_second_part_goes_through_response_url_once(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    out = reply("", msgid="m2", response_url=fake.issue(), deadline=clock.now + 300)
    await bot.send(out.with_text("第一部分"), http)
    assert await bot.send(out.with_text("第二部分"), http) == "response_url"
    assert [a["content"] for a in fake.answers] == ["第二部分"]
    assert fake.matching("/cgi-bin/aibot/response")[0].json == {
        "msgtype": "markdown",
        "markdown": {"content": "第二部分"},
    }
    # The URL took its one POST: a third part cannot be delivered, and nothing is sent.
    with pytest.raises(PlatformRejectedError, match="already used"):
        await bot.send(out.with_text("第三部分"), http)
    assert len(fake.requests) == 1


async def test_past_the_refresh_window_the_answer_goes_through_response_url(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    out = reply("", msgid="m3", response_url=fake.issue(), deadline=clock.now - 1)
    assert await bot.send(out.with_text("迟到的答案"), http) == "response_url"
    assert [a["content"] for a in fake.answers] == ["迟到的答案"]
    final = await refresh(bot, "m3")
    assert (final["content"], final["finish"]) == ("迟到的答案", True)
    meta = await aredis.hgetall(keys.aibot_stream("default", final["id"]))
    assert (meta[b"status"], meta[b"responded"]) == (b"late", b"1")


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ({"status": 502}, PlatformUnavailableError),
        ({"status": 429}, PlatformUnavailableError),
        (
            {"status": 200, "body": {"errcode": -1, "errmsg": "system busy"}},
            PlatformUnavailableError,
        ),
        ({"status": 200, "body": {"errcode": 600001, "errmsg": "used"}}, PlatformRejectedError),
        ({"status": 200, "delay_s": 2.0}, PlatformUnavailableError),  # past the 1 s timeout
    ],
)
async def test_response_url_failures_map_to_retry_or_refusal(
    aredis: aioredis.Redis,
    fake: AiBotFakeState,
    http: aiohttp.ClientSession,
    failure: dict[str, Any],
    error: type[Exception],
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    fake.fail_next(**failure)
    out = reply("", msgid="m4", response_url=fake.issue(), deadline=clock.now - 1)
    with pytest.raises(error):
        await bot.send(out.with_text("答案"), http)
    if error is PlatformUnavailableError and "delay_s" not in failure:
        # Retried by the pipeline: the URL was not used, so the retry delivers.
        assert await bot.send(out.with_text("答案"), http) == "response_url"
        assert [a["content"] for a in fake.answers] == ["答案"]


async def test_an_expired_response_url_is_a_refusal(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    out = reply("", msgid="m5", response_url=fake.issue(age_s=3700), deadline=clock.now - 1)
    with pytest.raises(PlatformRejectedError) as caught:
        await bot.send(out.with_text("答案"), http)
    assert caught.value.errcode == 600002


async def test_a_sweeper_finds_open_streams_past_their_deadline(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    fresh = reply("", msgid="s1", response_url=fake.issue(), deadline=clock.now + 300)
    stuck = reply("", msgid="s2", response_url=fake.issue(), deadline=clock.now - 10)
    await bot.delta_sink(fresh)("写到一半")
    await bot.delta_sink(stuck)("写到一半")  # a worker that died mid-answer
    assert await overdue(aredis, clock.now) == [("default", stream_id_of("default", "s2"))]
    assert len(await overdue(aredis, clock.now + 600)) == 2
    # A finished stream is no longer open, whatever its deadline.
    await bot.send(fresh.with_text("完整答案"), http)
    assert await overdue(aredis, clock.now + 600) == [("default", stream_id_of("default", "s2"))]
    snap = await StreamStore(aredis, "default").snapshot(stream_id_of("default", "s2"))
    assert (snap.status, snap.text, snap.response_url) == (
        "open",
        "写到一半",
        stuck.route["response_url"],
    )


async def test_a_message_left_unanswered_has_its_stream_closed(
    aredis: aioredis.Redis, fake: AiBotFakeState, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    quiet = reply("", msgid="u1", response_url=fake.issue(), deadline=clock.now + 300)
    await bot.finish(quiet)  # joined into a burst: the pipeline releases it (passive.release)
    closed = await refresh(bot, "u1")
    assert (closed["content"], closed["finish"]) == ("", True)
    # After a delivered answer, finish (called by the pipeline after every send) changes nothing.
    answered = reply("", msgid="u2", response_url=fake.issue(), deadline=clock.now + 300)
    await bot.send(answered.with_text("答案"), http)
    await bot.finish(answered)
    final = await refresh(bot, "u2")
    assert (final["content"], final["finish"]) == ("答案", True)
    assert await overdue(aredis, clock.now + 600) == []


async def test_a_redelivered_turn_streams_from_the_start(
    aredis: aioredis.Redis, fake: AiBotFakeState
) -> None:
    clock = Clock()
    bot = make(aredis, clock)
    out = reply("", msgid="d1", response_url=fake.issue(), deadline=clock.now + 300)
    await bot.delta_sink(out)("退货请在")  # the attempt of a worker that then died
    retry = bot.delta_sink(out)  # the redelivered task asks the model again
    await retry("退货")
    await retry("须知")
    assert (await refresh(bot, "d1"))["content"] == "退货须知"
