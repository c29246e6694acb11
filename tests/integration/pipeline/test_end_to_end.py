"""One message end to end: WeCom webhook → Redis/Celery → agent → model → WeCom message/send.

Real HTTP with real signatures and AES, real Redis, a real Celery worker (thread pool),
real SQLite; the WeCom API, vLLM and DashScope are fake servers on loopback.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import Session, select

from bot.agent.agent import HUMAN_FOLLOW_UP_TEXT
from bot.db.engine import get_engine
from bot.db.models import Delivery, Message
from tests.integration.conftest import faq_answer, wait_for
from tests.integration.webchat import as_user, sse_events


@pytest.fixture
async def stack(make_settings, make_client, celery_worker, fakes, wecom_app):
    """Web app + in-process worker wired to the fakes; returns (client, settings)."""
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    return client, settings


async def _post(client, wecom_app, text: str, **kw) -> None:
    query, body = wecom_app.callback(text, **kw)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


async def test_message_gets_exactly_one_reply_from_the_model(stack, fakes, wecom_app) -> None:
    client, settings = stack
    await _post(client, wecom_app, "怎么退货", user="lisi", msg_id="9001")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    sent = fakes.wecom.sent[0]
    assert sent["touser"] == "lisi"
    assert sent["content"] == "ANSWER: 怎么退货"
    # The model saw the knowledge base as data, and the user's text last.
    request = fakes.vllm.matching("/chat/completions")[0].json
    assert request["messages"][-1] == {"role": "user", "content": "怎么退货"}
    assert any("参考资料" in m["content"] for m in request["messages"] if m["role"] == "system")
    # WeCom retries the same message: no second send.
    await _post(client, wecom_app, "怎么退货", user="lisi", msg_id="9001")
    await asyncio.sleep(1.5)
    assert len(fakes.wecom.sent) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        rows = s.exec(select(Message).order_by(Message.id)).all()
        assert [(r.direction, r.text, r.backend) for r in rows] == [
            ("in", "怎么退货", ""),
            ("out", "ANSWER: 怎么退货", "vllm"),
        ]
        delivery = s.exec(select(Delivery)).one()
        assert (delivery.status, delivery.platform_msg_id) == ("sent", sent["msgid"])


async def test_the_conversation_is_remembered(stack, fakes, wecom_app) -> None:
    client, _ = stack
    await _post(client, wecom_app, "我买的扫地机器人坏了", user="wangwu")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await _post(client, wecom_app, "能换新的吗", user="wangwu")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    second = fakes.vllm.matching("/chat/completions")[1].json["messages"]
    turns = [(m["role"], m["content"]) for m in second if m["role"] != "system"]
    assert turns == [
        ("user", "我买的扫地机器人坏了"),
        ("assistant", "ANSWER: 我买的扫地机器人坏了"),
        ("user", "能换新的吗"),
    ]


async def test_turns_of_one_conversation_are_answered_in_order(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.vllm.delay_s = 0.3
    for i in range(4):
        await _post(client, wecom_app, f"问题{i}", user="zhaoliu")
    await wait_for(lambda: len(fakes.wecom.sent) == 4)
    assert [m["content"] for m in fakes.wecom.sent] == [f"ANSWER: 问题{i}" for i in range(4)]


async def test_vllm_down_falls_back_to_dashscope(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.vllm.fail_next(10, status=503)
    fakes.dashscope.script("您好，七天内可以无理由退货。")
    await _post(client, wecom_app, "怎么退货")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == "您好，七天内可以无理由退货。"
    assert len(fakes.dashscope.matching("/generation")) == 1


async def test_vllm_timeout_falls_back_to_dashscope(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.vllm.delay_s = 10  # longer than VLLM_TIMEOUT_S=3
    await _post(client, wecom_app, "发票怎么开")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == "ANSWER: 发票怎么开"
    assert len(fakes.dashscope.matching("/generation")) == 1


async def test_both_models_down_gives_the_knowledge_base_answer(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.vllm.fail_next(10, status=500)
    fakes.dashscope.fail_next(10, status=429, body={"code": "Throttling", "message": "slow down"})
    await _post(client, wecom_app, "我想退货怎么办")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == faq_answer("怎么退货")


async def test_both_models_down_and_nothing_known_promises_a_human(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.vllm.fail_next(10, status=500)
    fakes.dashscope.fail_next(10, status=500)
    await _post(client, wecom_app, "量子引力的最新进展是什么")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == HUMAN_FOLLOW_UP_TEXT


async def test_long_reply_is_split_in_order_within_2048_bytes(stack, fakes, wecom_app) -> None:
    client, _ = stack
    sentences = [f"这是第{i}句关于退货流程的详细说明，请您耐心阅读。" for i in range(120)]
    fakes.vllm.script("".join(sentences))
    await _post(client, wecom_app, "详细说说退货流程")
    await wait_for(lambda: len(fakes.wecom.sent) >= 3)
    await asyncio.sleep(0.5)
    parts = [m["content"] for m in fakes.wecom.sent]
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert "".join(parts) == "".join(sentences)
    assert all(p.endswith("。") for p in parts)  # cut on sentence boundaries


async def test_expired_token_is_refreshed_once(stack, fakes, wecom_app) -> None:
    client, _ = stack
    await _post(client, wecom_app, "第一句")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    fakes.wecom.expire_current()
    await _post(client, wecom_app, "第二句")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert len(fakes.wecom.matching("/gettoken")) == 2
    assert fakes.wecom.sent[1]["token"] == "tok-2"


async def test_wecom_5xx_is_retried_without_a_second_model_call(stack, fakes, wecom_app) -> None:
    client, _ = stack
    fakes.wecom.fail_next(1, status=502)  # gettoken fails once: the task retries
    await _post(client, wecom_app, "多久发货")
    await wait_for(lambda: len(fakes.wecom.sent) == 1, timeout_s=30)
    assert fakes.wecom.sent[0]["content"] == "ANSWER: 多久发货"
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_web_chat_round_trip_json(stack, fakes) -> None:
    client, _ = stack
    resp = await client.post(
        "/api/chat", json={**await as_user(client, "web-1"), "text": "发票怎么开"}
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["reply"] == "ANSWER: 发票怎么开"
    assert data["conversation"] == "web-1"
    assert len(fakes.wecom.sent) == 0


async def test_web_chat_streams_server_sent_events(stack, fakes) -> None:
    client, _ = stack
    fakes.vllm.script("您好！七天无理由退货，运费由买家承担。")
    resp = await client.post(
        "/api/chat",
        json={**await as_user(client, "web-2"), "text": "怎么退货"},
        headers={"Accept": "text/event-stream"},
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(await resp.text())
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start"
    assert kinds[-1] == "done"
    deltas = "".join(d["text"] for kind, d in events if kind == "delta")
    messages = [d["text"] for kind, d in events if kind == "message"]
    assert kinds.count("delta") > 1
    assert deltas == messages[0]
    # The passages it drew on come as a `sources` event, not as a "参考：" line in the text.
    assert messages[0] == "您好！七天无理由退货，运费由买家承担。"
    for kind, data in events:
        if kind == "sources":
            assert all(set(s) == {"title", "section", "url"} for s in data["sources"])


async def test_enter_agent_event_gets_a_welcome(stack, fakes, wecom_app) -> None:
    import os
    import time

    from adapters.wecom import simulate as wecom_simulate
    from bot.agent.agent import WELCOME_TEXT

    client, _ = stack
    now = int(time.time())
    fields = wecom_simulate.event_fields(
        "enter_agent",
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        from_user="newbie",
        create_time=now,
    )
    query, body = wecom_simulate.build_post(
        fields,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(now),
        nonce="31337",
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0] == {
        **fakes.wecom.sent[0],
        "touser": "newbie",
        "content": WELCOME_TEXT,
    }
    assert fakes.vllm.matching("/chat/completions") == []  # a welcome needs no model
    # Entering again the same day: no second greeting.
    now += 60
    fields = {**fields, "CreateTime": now}
    query, body = wecom_simulate.build_post(
        fields,
        corp_id=wecom_app.corp_id,
        agent_id=wecom_app.agent_id,
        token=wecom_app.token,
        aes_key=wecom_app.aes_key,
        timestamp=str(now),
        nonce="31338",
        random_prefix=os.urandom(16),
    )
    assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await asyncio.sleep(1.5)
    assert len(fakes.wecom.sent) == 1


async def test_confident_faq_match_is_answered_without_a_model_call(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    settings = make_settings(core={"faq_direct_score": 0.8}, **fakes.sections(wecom_app))
    client = await make_client(settings)
    celery_worker(settings)
    await _post(client, wecom_app, "怎么退货")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert fakes.wecom.sent[0]["content"] == faq_answer("怎么退货")
    resp = await client.post(
        "/api/chat", json={**await as_user(client, "web-faq"), "text": "如何开发票"}
    )
    assert (await resp.json())["reply"] == faq_answer("如何开发票")
    assert fakes.vllm.matching("/chat/completions") == []
    assert fakes.dashscope.matching("/generation") == []
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        out = s.exec(select(Message).where(Message.direction == "out")).all()
        assert sorted((m.backend, m.degraded) for m in out) == [("faq", False), ("faq", False)]
