"""Human handoff end to end: WeCom webhook → worker → handoff → group robot → admin API.

Real HTTP with real signatures, real Redis, a real Celery worker (thread pool), SQLite;
the WeCom API, the models and the WeCom group robot are fakes on loopback.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from bot.db.engine import get_engine
from bot.db.models import Conversation, Delivery, HandoffEvent, Message
from tests.fakes.base import serve
from tests.fakes.openai_server import FakeToolCall, ScriptedReply
from tests.fakes.robot_webhooks import RobotFakeState, robot_app
from tests.integration.conftest import wait_for

TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting
RETURNED = "人工服务已结束，接下来由智能助手为您服务。"
WAITING = "已收到，客服马上就来，您当前排队第 1 位。"


@pytest.fixture
def robot() -> Iterator[tuple[RobotFakeState, str]]:
    state = RobotFakeState()
    with serve(robot_app(state)) as url:
        yield state, url


@pytest.fixture
def handoff_stack(make_settings, make_client, celery_worker, fakes, wecom_app, robot):
    """Returns start(**handoff_overrides) → (client, settings)."""
    state, url = robot

    async def start(database_url: str = "", **handoff):
        extra = {"database_url": database_url} if database_url else {}
        settings = make_settings(
            **fakes.sections(wecom_app),
            # No burst coalescing or rate limit: these tests send quick, repeated messages.
            core={
                "admin_token": TOKEN,
                "burst_window_s": 0,
                "rate_per_minute": 0,
                "rate_per_day": 0,
                **extra,
            },
            handoff={
                "notify_kind": "wecom",
                "notify_url": f"{url}/cgi-bin/webhook/send?key={state.wecom_key}",
                "public_url": "http://bot.example.com",
                **handoff,
            },
        )
        client = await make_client(settings)
        celery_worker(settings)
        return client, settings

    return start


async def _post(client, wecom_app, text: str, user: str = "lisi") -> None:
    query, body = wecom_app.callback(text, user=user)
    resp = await client.post("/webhooks/wecom", params=query, data=body)
    assert resp.status == 200, await resp.text()


def _conversation(settings, external_id: str) -> Conversation:
    with Session(get_engine(settings.core.effective_database_url())) as s:
        return s.exec(select(Conversation).where(Conversation.external_id == external_id)).one()


def _events(settings, conv_id: int) -> list[tuple[str, str, str]]:
    with Session(get_engine(settings.core.effective_database_url())) as s:
        rows = s.exec(
            select(HandoffEvent)
            .where(HandoffEvent.conversation_id == conv_id)
            .order_by(HandoffEvent.id)  # type: ignore[arg-type]
        ).all()
        return [(e.from_state, e.to_state, e.trigger) for e in rows]


def _sent(fakes) -> list[str]:
    return [m["content"] for m in fakes.wecom.sent]


async def test_explicit_request_human_reply_and_release(
    handoff_stack, fakes, wecom_app, robot, caplog
):
    client, settings = await handoff_stack()
    group, _ = robot
    await _post(client, wecom_app, "转人工")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert _sent(fakes) == [NOTICE]
    assert fakes.vllm.matching("/chat/completions") == []  # no model call for the request
    conv = _conversation(settings, "lisi")
    assert conv.state == "human"
    assert _events(settings, conv.id) == [("bot", "human", "user_request")]
    await wait_for(lambda: len(group.accepted("wecom")) == 1)
    notice = group.accepted("wecom")[0]["markdown"]["content"]
    assert "user_request" in notice
    assert "lisi" in notice
    assert "> 客户：转人工" in notice
    link = re.search(
        r"\((http://bot\.example\.com/api/conversations/\d+/transcript\?[^)]+)\)", notice
    ).group(1)

    # While the humans hold it the bot does not answer: a customer still in the queue hears
    # their place once a minute, the group hears of the new message once.
    await _post(client, wecom_app, "还在吗")
    await _post(client, wecom_app, "有人吗")
    await wait_for(lambda: len(group.accepted("wecom")) == 2)
    await asyncio.sleep(1.0)
    assert _sent(fakes) == [NOTICE, WAITING]
    assert len(group.accepted("wecom")) == 2  # rate-limited: one forward per minute
    assert "还在吗" in group.accepted("wecom")[1]["markdown"]["content"]
    assert fakes.vllm.matching("/chat/completions") == []

    resp = await client.get("/api/handoffs", headers=AUTH)
    assert resp.status == 200
    [held] = (await resp.json())["handoffs"]
    assert (held["id"], held["trigger"], held["external_id"]) == (conv.id, "user_request", "lisi")
    assert (await client.get("/api/handoffs")).status == 401

    # A person answers through the admin API; it reaches the customer's WeCom.
    resp = await client.post(
        f"/api/conversations/{conv.id}/reply",
        headers=AUTH,
        json={"text": "您好，我是客服小王，请问有什么可以帮您？", "agent": "wang"},
    )
    assert resp.status == 200, await resp.text()
    assert fakes.wecom.sent[-1]["touser"] == "lisi"
    assert _sent(fakes)[-1] == "您好，我是客服小王，请问有什么可以帮您？"
    with Session(get_engine(settings.core.effective_database_url())) as s:
        row = s.exec(select(Message).where(Message.backend == "human")).one()
        assert (row.direction, row.sender_id) == ("out", "wang")
        delivery = s.exec(select(Delivery).where(Delivery.message_id == row.id)).one()
        assert (delivery.status, delivery.platform_msg_id) == (
            "sent",
            fakes.wecom.sent[-1]["msgid"],
        )

    # The group's link opens without the admin token; a forged one does not.
    path = link.removeprefix("http://bot.example.com")
    page = await client.get(path)
    assert page.status == 200
    text = await page.text()
    assert "有人吗" in text
    assert "客服小王" in text
    assert (await client.get(path[:-4] + "0000")).status == 403
    assert (await client.get(f"/api/conversations/{conv.id}/transcript")).status == 403
    refused = [r for r in caplog.records if "transcript" in r.getMessage()]
    assert [r.getMessage() for r in refused] == [
        f"transcript {conv.id} refused: link invalid or expired"
    ] * 2

    detail = await (await client.get(f"/api/conversations/{conv.id}", headers=AUTH)).json()
    assert [m["text"] for m in detail["messages"] if m["direction"] == "in"] == [
        "转人工",
        "还在吗",
        "有人吗",
    ]

    resp = await client.post(
        f"/api/conversations/{conv.id}/release", headers=AUTH, json={"agent": "wang"}
    )
    assert resp.status == 200
    assert (await resp.json())["notice"] == "sent"
    assert _sent(fakes)[-1] == RETURNED  # the customer hears the bot is back
    assert (await client.post(f"/api/conversations/{conv.id}/release", headers=AUTH)).status == 409
    await _post(client, wecom_app, "怎么退货")
    await wait_for(lambda: len(fakes.wecom.sent) == 5)
    assert _sent(fakes)[-1] == "ANSWER: 怎么退货"
    assert _events(settings, conv.id) == [
        ("bot", "human", "user_request"),
        ("human", "bot", "release_admin"),
    ]


async def test_the_model_asks_for_a_person(handoff_stack, fakes, wecom_app, robot):
    client, settings = await handoff_stack()
    group, _ = robot
    fakes.vllm.script(
        ScriptedReply(tool_calls=(FakeToolCall("handoff_to_human", {"reason": "客户要求赔偿"}),)),
        "好的，我这就为您转接人工客服。",
    )
    await _post(client, wecom_app, "你们把我的东西弄坏了，必须赔偿")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert _sent(fakes) == [NOTICE]
    conv = _conversation(settings, "lisi")
    assert _events(settings, conv.id) == [("bot", "human", "model")]
    await wait_for(lambda: len(group.accepted("wecom")) == 1)
    assert "客户要求赔偿" in group.accepted("wecom")[0]["markdown"]["content"]


async def test_anger_keeps_the_answer_and_adds_the_notice(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack()
    await _post(client, wecom_app, "你们就是骗子，我要投诉")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert _sent(fakes) == [f"ANSWER: 你们就是骗子，我要投诉\n\n{NOTICE}"]
    conv = _conversation(settings, "lisi")
    assert (conv.state, _events(settings, conv.id)) == ("human", [("bot", "human", "anger")])


async def test_the_third_repeat_hands_over(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack(low_confidence=0.0)
    for i, text in enumerate(["我的快递到哪了", "我的快递到哪了？", "我的快递 到哪了！"], 1):
        await _post(client, wecom_app, text)
        await wait_for(lambda i=i: len(fakes.wecom.sent) == i)
    assert _sent(fakes)[:2] == ["ANSWER: 我的快递到哪了", "ANSWER: 我的快递到哪了？"]
    assert _sent(fakes)[2] == NOTICE
    conv = _conversation(settings, "lisi")
    assert _events(settings, conv.id) == [("bot", "human", "repeat")]


async def test_low_confidence_for_two_turns_hands_over(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack(low_confidence=0.99, low_confidence_turns=2)
    await _post(client, wecom_app, "量子引力的最新进展")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    assert _sent(fakes) == ["ANSWER: 量子引力的最新进展"]
    assert _conversation(settings, "lisi").state == "bot"
    await _post(client, wecom_app, "黑洞信息悖论怎么解决")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert _sent(fakes)[1] == NOTICE  # a low-confidence answer would not help: notice only
    conv = _conversation(settings, "lisi")
    assert _events(settings, conv.id) == [("bot", "human", "low_confidence")]


async def test_idle_humans_give_the_conversation_back(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack(idle_release_s=1.0)
    await _post(client, wecom_app, "转人工")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await asyncio.sleep(1.3)
    await _post(client, wecom_app, "还有人吗")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert _sent(fakes)[1] == f"{RETURNED}\n\nANSWER: 还有人吗"  # told once, then answered
    conv = _conversation(settings, "lisi")
    assert _events(settings, conv.id) == [
        ("bot", "human", "user_request"),
        ("human", "bot", "idle_timeout"),
    ]


async def test_the_back_to_the_bot_notice_can_be_switched_off(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack(idle_release_s=1.0, returned_text="")
    await _post(client, wecom_app, "转人工")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    conv = _conversation(settings, "lisi")
    resp = await client.post(f"/api/conversations/{conv.id}/release", headers=AUTH)
    assert (await resp.json())["notice"] == "off"
    await client.post(f"/api/conversations/{conv.id}/handoff", headers=AUTH)
    await asyncio.sleep(1.3)
    await _post(client, wecom_app, "还有人吗")  # idle again: a plain answer, no notice
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert _sent(fakes) == [NOTICE, "ANSWER: 还有人吗"]


async def test_the_customer_can_end_the_human_session(handoff_stack, fakes, wecom_app):
    client, settings = await handoff_stack()
    await _post(client, wecom_app, "转人工")
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await _post(client, wecom_app, "结束人工")
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert _sent(fakes)[1] == "好的，已结束人工服务，智能客服继续为您服务。"
    await _post(client, wecom_app, "发票怎么开")
    await wait_for(lambda: len(fakes.wecom.sent) == 3)
    assert _sent(fakes)[2] == "ANSWER: 发票怎么开"
    conv = _conversation(settings, "lisi")
    assert [e[2] for e in _events(settings, conv.id)] == ["user_request", "release_command"]


async def test_an_agent_takes_over_and_a_failed_group_notice_loses_nothing(
    handoff_stack, fakes, wecom_app, robot
):
    group, _ = robot
    group.fail_next(5, status=500, body={"errcode": -1, "errmsg": "system busy"})
    client, settings = await handoff_stack()
    await _post(client, wecom_app, "转人工")  # the group robot is down
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    conv = _conversation(settings, "lisi")
    assert conv.state == "human"  # the handoff stands
    assert group.accepted("wecom") == []
    await client.post(f"/api/conversations/{conv.id}/release", headers=AUTH)
    assert _sent(fakes)[-1] == RETURNED
    resp = await client.post(
        f"/api/conversations/{conv.id}/handoff",
        headers=AUTH,
        json={"agent": "zhao", "reason": "VIP 客户"},
    )
    assert resp.status == 200
    assert (await client.post(f"/api/conversations/{conv.id}/handoff", headers=AUTH)).status == 409
    await _post(client, wecom_app, "你好")
    await asyncio.sleep(1.5)
    assert _sent(fakes)[2:] == [WAITING]  # nobody claimed it: the customer hears their place
    assert [e[2] for e in _events(settings, conv.id)] == ["user_request", "release_admin", "admin"]
    bad = await client.post(f"/api/conversations/{conv.id}/reply", headers=AUTH, json={"text": ""})
    assert bad.status == 400
    missing = await client.post("/api/conversations/99999/reply", headers=AUTH, json={"text": "x"})
    assert missing.status == 404


async def test_idle_release_and_repeat(handoff_stack, fakes, wecom_app):
    # The test's own PostgreSQL database (the default): the handoff list below is only its.
    client, settings = await handoff_stack(idle_release_s=1.0, low_confidence=0.0)
    user = f"pg-{uuid.uuid4().hex[:8]}"
    await _post(client, wecom_app, "转人工", user=user)
    await wait_for(lambda: len(fakes.wecom.sent) == 1)
    await asyncio.sleep(1.3)
    await _post(client, wecom_app, "我的快递呢", user=user)  # idle: the bot answers again
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    # Repeats count from the return to the bot: the message that found the humans idle
    # came before it, so the third repeat is the fourth message.
    for i in (3, 4, 5):
        await _post(client, wecom_app, "我的快递呢", user=user)
        await wait_for(lambda i=i: len(fakes.wecom.sent) == i)
    back = f"{RETURNED}\n\nANSWER: 我的快递呢"
    assert _sent(fakes) == [NOTICE, back] + ["ANSWER: 我的快递呢"] * 2 + [NOTICE]
    conv = _conversation(settings, user)
    assert [e[2] for e in _events(settings, conv.id)] == ["user_request", "idle_timeout", "repeat"]
    resp = await client.get("/api/handoffs", headers=AUTH, params={"trigger": "repeat"})
    assert [h["id"] for h in (await resp.json())["handoffs"]] == [conv.id]
    resp = await client.get("/api/handoffs", headers=AUTH, params={"trigger": "anger"})
    assert (await resp.json())["handoffs"] == []
