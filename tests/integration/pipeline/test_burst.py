"""Burst coalescing: quick successive messages of one user are answered as one turn.

End to end through the WeCom webhook and a real worker, plus the Redis protocol of
`bot.pipeline.coalesce` on its own for the crash cases (a redelivered lead, a later task first).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Message
from bot.domain import InboundMessage, Platform
from bot.pipeline import coalesce, intake
from tests.fakes.base import serve
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.integration.conftest import wait_for
from tests.integration.pipeline import test_wechat_mp_end_to_end as mp_e2e


async def _post(client, wecom_app, text: str, **kw) -> None:
    query, body = wecom_app.callback(text, **kw)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


def _coalesced_total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('bot_replies_total{outcome="coalesced",platform="wecom"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_three_quick_messages_get_one_answer(
    make_settings, make_client, celery_worker, fakes, wecom_app, sync_redis
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"burst_window_s": 0.8})
    client = await make_client(settings)
    celery_worker(settings)
    before = _coalesced_total(await (await client.get("/metrics")).text())
    texts = ["在吗", "我的订单", "什么时候发货"]
    ids = ["7001", "7002", "7003"]
    for text, msg_id in zip(texts, ids, strict=True):
        await _post(client, wecom_app, text, user="burst-user", msg_id=msg_id)
        await asyncio.sleep(0.2)  # typed one after another, well within the window
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await asyncio.sleep(1.5)  # nothing else comes: the other two tasks end without a send
    assert len(fakes.wecom.sent) == 1
    calls = fakes.vllm.matching("/chat/completions")
    assert len(calls) == 1
    assert calls[0].json["messages"][-1] == {"role": "user", "content": "\n".join(texts)}
    assert fakes.wecom.sent[0]["content"] == "ANSWER: " + "\n".join(texts)
    for absorbed in ids[1:]:
        assert sync_redis.get(f"coalesced:wecom:default:{absorbed}") == b"7001"
    after = _coalesced_total(await (await client.get("/metrics")).text())
    assert after - before == 2
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        rows = s.exec(select(Message).order_by(Message.id)).all()  # type: ignore[arg-type]
    # Each message is stored; the one answer follows them and replies to the first.
    assert [(r.direction, r.text) for r in rows] == [
        *(("in", t) for t in texts),
        ("out", "ANSWER: " + "\n".join(texts)),
    ]


async def test_messages_apart_are_answered_one_by_one(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(**fakes.sections(wecom_app), core={"burst_window_s": 0.3})
    client = await make_client(settings)
    celery_worker(settings)
    await _post(client, wecom_app, "在吗", user="slow-user")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await _post(client, wecom_app, "我的订单", user="slow-user")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert [m["content"] for m in fakes.wecom.sent] == ["ANSWER: 在吗", "ANSWER: 我的订单"]


def _msg(event_id: str, text: str, sender: str = "u1") -> InboundMessage:
    return InboundMessage(
        platform=Platform.WEB,
        app="default",
        event_id=event_id,
        conversation_id="c1",
        sender_id=sender,
        text=text,
    )


async def test_a_redelivered_lead_answers_the_same_burst(aredis) -> None:
    window = 0.3
    msgs = [_msg("e1", "在吗"), _msg("e2", "我的订单"), _msg("e3", "什么时候发货")]
    seqs = [await intake.accept(aredis, m) for m in msgs]
    assert seqs == [1, 2, 3]
    first = await coalesce.take(aredis, msgs[0], 1, window)
    assert [m.event_id for m in first or []] == ["e2", "e3"]
    # The worker died after claiming; the task runs again and finds the same burst.
    again = await coalesce.take(aredis, msgs[0], 1, window)
    assert again == first
    assert coalesce.joined(msgs[0], again or []).text == "在吗\n我的订单\n什么时候发货"
    assert await coalesce.take(aredis, msgs[1], 2, window) is None
    assert await coalesce.take(aredis, msgs[2], 3, window) is None


async def test_a_message_that_had_its_own_turn_is_never_absorbed(aredis) -> None:
    msgs = [_msg("e1", "在吗"), _msg("e2", "我的订单")]
    for m in msgs:
        await intake.accept(aredis, m)
    # The second message's task ran first (the first one's was lost for a while).
    assert await coalesce.take(aredis, msgs[1], 2, 0.2) == []
    assert await coalesce.take(aredis, msgs[0], 1, 0.2) == []


async def test_a_burst_stops_at_another_sender_or_an_event(aredis) -> None:
    first = _msg("e1", "在吗")
    other = _msg("e2", "我也有问题", sender="u2")
    for m in (first, other, _msg("e3", "我的订单")):
        await intake.accept(aredis, m)
    assert await coalesce.take(aredis, first, 1, 0.2) == []


async def test_the_wait_is_bounded_while_messages_keep_coming(aredis) -> None:
    window = 0.2
    lead = _msg("e0", "第0条")
    await intake.accept(aredis, lead)
    started = asyncio.get_running_loop().time()

    async def keep_typing() -> None:
        for i in range(1, 12):
            await asyncio.sleep(0.1)
            await intake.accept(aredis, _msg(f"e{i}", f"第{i}条"))

    typing = asyncio.create_task(keep_typing())
    absorbed = await coalesce.take(aredis, lead, 1, window)
    waited = asyncio.get_running_loop().time() - started
    await typing
    assert waited < coalesce.MAX_WAIT_FACTOR * window + 0.3
    assert absorbed  # it took what had arrived by then


@pytest.fixture
def mp_fake() -> Iterator[tuple[WeChatMPFakeState, str]]:
    state = WeChatMPFakeState(app_id="wx" + secrets.token_hex(8), secret=secrets.token_hex(16))
    with serve(make_wechat_mp_app(state)) as url:
        yield state, url


async def test_wechat_mp_burst_one_passive_answer_and_the_other_request_freed(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_fake
) -> None:
    client, _ = await mp_e2e._stack(
        make_settings,
        make_client,
        celery_worker,
        fakes,
        wecom_app,
        mp_fake,
        "",
        4.5,
        core={"burst_window_s": 0.6},
    )
    state, _ = mp_fake
    # Warm the worker up (knowledge index, clients), so the timing below is the burst's.
    await mp_e2e._post_raw(client, *mp_e2e._plain("你好", "oWarmUp", "81000"))
    started = time.monotonic()
    first = asyncio.create_task(mp_e2e._post_raw(client, *mp_e2e._plain("在吗", "oBurst", "81001")))
    await asyncio.sleep(0.2)
    second = await mp_e2e._post_raw(client, *mp_e2e._plain("我的订单", "oBurst", "81002"))
    # The absorbed message's webhook is let go at once with WeChat's empty answer...
    assert second == b"success"
    assert time.monotonic() - started < 2.5  # not the 4.5 s passive wait
    # ...and the first one carries the single answer to both.
    answer = await first
    assert mp_e2e._passive_content(answer, openid="oBurst") == "ANSWER: 在吗\n我的订单"
    await asyncio.sleep(1.0)
    assert state.matching(mp_e2e.SEND) == []
    assert len(fakes.vllm.matching("/chat/completions")) == 2  # the warm-up and the burst


async def test_restart_is_never_part_of_a_burst(aredis) -> None:
    first, restart = _msg("e1", "我的订单"), _msg("e2", "重新开始")
    for m in (first, restart, _msg("e3", "你好")):
        await intake.accept(aredis, m)
    assert await coalesce.take(aredis, first, 1, 0.1) == []
    assert await coalesce.take(aredis, restart, 2, 0.1) == []
