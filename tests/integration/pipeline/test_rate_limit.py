"""Per-user rate limit end to end, and its Redis script on its own (windows, idempotence)."""

from __future__ import annotations

from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Message
from bot.domain import InboundMessage, Platform
from bot.pipeline import ratelimit
from tests.integration.webchat import as_user


async def test_the_message_over_the_limit_gets_one_notice_and_no_model_call(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"rate_per_minute": 2})
    client = await make_client(settings)
    celery_worker(settings)

    async def chat(user: str, text: str) -> str:
        resp = await client.post("/api/chat", json={**await as_user(client, user), "text": text})
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["reply"])

    assert await chat("busy", "第一个问题") == "ANSWER: 第一个问题"
    assert await chat("busy", "第二个问题") == "ANSWER: 第二个问题"
    assert await chat("busy", "第三个问题") == ratelimit.NOTICE_TEXT["minute"]
    # Told once per window: later messages are stored but get no answer at all.
    assert await chat("busy", "第四个问题") == ""
    assert len(fakes.vllm.matching("/chat/completions")) == 2
    # Another user is not affected.
    assert await chat("calm", "你好") == "ANSWER: 你好"
    metrics = await (await client.get("/metrics")).text()
    assert 'bot_replies_total{outcome="limited",platform="web"}' in metrics
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        inbound = s.exec(select(Message).where(Message.direction == "in")).all()
    assert sorted(m.text for m in inbound) == sorted(
        ["第一个问题", "第二个问题", "第三个问题", "第四个问题", "你好"]
    )


def _msg(event_id: str) -> InboundMessage:
    return InboundMessage(Platform.WECOM, "default", event_id, "c1", "u1", "hi")


async def test_sliding_windows_notice_once_and_decide_once_per_message(aredis) -> None:
    limits = {"per_minute": 3, "per_day": 4}
    now = 1_000_000.0
    for i in range(3):
        assert (await ratelimit.check(aredis, _msg(f"m{i}"), now=now + i, **limits)).allowed
    over = await ratelimit.check(aredis, _msg("m3"), now=now + 3, **limits)
    assert (over.allowed, over.notify, over.window) == (False, True, "minute")
    # A redelivered task gets the same decision and counts nothing again.
    assert await ratelimit.check(aredis, _msg("m3"), now=now + 4, **limits) == over
    assert await ratelimit.check(aredis, _msg("m0"), now=now + 4, **limits) == ratelimit.ALLOWED
    assert (await ratelimit.check(aredis, _msg("m4"), now=now + 5, **limits)).silent
    # A minute later the first two messages left the minute window, not the day's.
    later = now + 61
    assert (await ratelimit.check(aredis, _msg("m5"), now=later, **limits)).allowed
    day = await ratelimit.check(aredis, _msg("m6"), now=later, **limits)
    assert (day.allowed, day.notify, day.window) == (False, True, "day")
    assert "今天" in day.notice


async def test_zero_turns_the_limits_off(aredis) -> None:
    for i in range(50):
        decision = await ratelimit.check(aredis, _msg(f"x{i}"), per_minute=0, per_day=0)
        assert decision.allowed
    assert await aredis.keys("rate:*") == []
