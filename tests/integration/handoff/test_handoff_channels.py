"""Handoff on other channels and under contention: 微信客服, web chat, racing transitions."""

from __future__ import annotations

import asyncio
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlmodel import Session, select

from bot.db import records as db
from bot.db.engine import get_engine
from bot.db.models import Conversation, HandoffEvent
from bot.domain import InboundMessage, Platform
from bot.handoff import state as handoff
from tests.fakes.base import serve
from tests.fakes.robot_webhooks import RobotFakeState, robot_app
from tests.fakes.wecom_kf_api import WeComKfFakeState, make_wecom_kf_app
from tests.integration.adapters.test_wecom_kf import OPEN_KFID, USER, KfApp
from tests.integration.conftest import wait_for
from tests.integration.webchat import as_user

TOKEN = "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting
NO_LIMITS = {"admin_token": TOKEN, "burst_window_s": 0, "rate_per_minute": 0, "rate_per_day": 0}


@pytest.fixture
def robot() -> Iterator[tuple[RobotFakeState, str]]:
    state = RobotFakeState(dingtalk_secret="SECsecret-for-tests")
    with serve(robot_app(state)) as url:
        yield state, url


@pytest.fixture
def kf() -> Iterator[tuple[KfApp, WeComKfFakeState, str]]:
    alphabet = string.ascii_letters + string.digits
    app = KfApp(
        corp_id="wwkf" + secrets.token_hex(4),
        secret=secrets.token_urlsafe(16),
        token=secrets.token_urlsafe(8),
        aes_key="".join(secrets.choice(alphabet) for _ in range(43)),
    )
    state = WeComKfFakeState(corp_id=app.corp_id, secret=app.secret, open_kfid=OPEN_KFID)
    with serve(make_wecom_kf_app(state)) as url:
        yield app, state, url


def _vllm(fakes) -> dict[str, object]:
    return {"base_url": f"{fakes.vllm_url}/v1", "model": fakes.vllm.model, "timeout_s": 3}


async def test_wecom_kf_hands_the_session_to_the_servicers_after_the_notice(
    make_settings, make_client, celery_worker, fakes, kf, robot
) -> None:
    kf_app, kf_api, kf_url = kf
    group, group_url = robot
    settings = make_settings(
        vllm=_vllm(fakes),
        wecom_kf=kf_app.section(kf_url),
        core=NO_LIMITS,
        handoff={
            "notify_kind": "dingtalk",
            "notify_url": f"{group_url}/robot/send?access_token={group.dingtalk_token}",
            "notify_secret": group.dingtalk_secret,
        },
    )
    client = await make_client(settings)
    celery_worker(settings)
    kf_api.text(USER, "我要人工客服")
    query, body = kf_app.callback(kf_api.new_sync_token())
    assert (await client.post("/webhooks/wecom_kf", params=query, data=body)).status == 200
    await wait_for(lambda: len(kf_api.transfers) == 1)
    assert [(m["touser"], m["content"]) for m in kf_api.sent] == [(USER, NOTICE)]
    # service_state 2: into the servicers' queue, where WeCom assigns a person.
    assert kf_api.transfers == [
        {"open_kfid": OPEN_KFID, "external_userid": USER, "service_state": 2}
    ]
    # In that order: WeCom refuses kf/send_msg once the session has left the bot.
    paths = [r.path for r in kf_api.requests]
    assert paths.index("/cgi-bin/kf/send_msg") < paths.index("/cgi-bin/kf/service_state/trans")
    await wait_for(lambda: len(group.accepted("dingtalk")) == 1)  # signed DingTalk notice
    assert "user_request" in group.accepted("dingtalk")[0]["markdown"]["text"]
    # The customer writes again: the servicers have it, the bot does not answer.
    kf_api.text(USER, "人呢")
    query, body = kf_app.callback(kf_api.new_sync_token())
    assert (await client.post("/webhooks/wecom_kf", params=query, data=body)).status == 200
    await asyncio.sleep(1.5)
    assert len(kf_api.sent) == 1


async def test_web_chat_waits_then_gets_the_human_reply(
    make_settings, make_client, celery_worker, fakes
) -> None:
    settings = make_settings(vllm=_vllm(fakes), core=NO_LIMITS)
    client = await make_client(settings)
    celery_worker(settings)
    resp = await client.post(
        "/api/chat", json={**await as_user(client, "web-u1"), "text": "转人工"}
    )
    assert (await resp.json())["reply"] == NOTICE
    start = await (
        await client.get("/api/chat/messages", params=await as_user(client, "web-u1"))
    ).json()
    assert start["messages"] == []
    resp = await client.post("/api/chat", json={**await as_user(client, "web-u1"), "text": "在吗"})
    assert (await resp.json())["reply"] == "已收到，客服马上就来，您当前排队第 1 位。"
    started = time.monotonic()
    resp = await client.post("/api/chat", json={**await as_user(client, "web-u1"), "text": "人呢"})
    assert (await resp.json())["reply"] == ""  # told a moment ago; the request does not hang
    assert time.monotonic() - started < 5
    with Session(get_engine(settings.core.effective_database_url())) as s:
        conv = s.exec(select(Conversation).where(Conversation.external_id == "web-u1")).one()
    resp = await client.post(
        f"/api/conversations/{conv.id}/reply", headers=AUTH, json={"text": "您好，我是人工客服"}
    )
    assert resp.status == 200, await resp.text()
    polled = await (
        await client.get(
            "/api/chat/messages", params={**await as_user(client, "web-u1"), "after": start["last"]}
        )
    ).json()
    assert [m["text"] for m in polled["messages"]] == ["您好，我是人工客服"]
    again = await client.get(
        "/api/chat/messages", params={**await as_user(client, "web-u1"), "after": polled["last"]}
    )
    assert (await again.json())["messages"] == []
    bad = await client.get(
        "/api/chat/messages", params={**await as_user(client, "web-u1"), "after": "x; DROP"}
    )
    assert bad.status == 400
    # The agent lets go: the chat page's inbox says the bot is back.
    resp = await client.post(f"/api/conversations/{conv.id}/release", headers=AUTH)
    assert (await resp.json())["notice"] == "sent"
    back = await (
        await client.get(
            "/api/chat/messages",
            params={**await as_user(client, "web-u1"), "after": polled["last"]},
        )
    ).json()
    assert [m["text"] for m in back["messages"]] == ["人工服务已结束，接下来由智能助手为您服务。"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/bot.db"
    else:
        yield request.getfixturevalue("pg_url")


def test_racing_transitions_move_a_conversation_once(database_url: str) -> None:
    engine = get_engine(database_url)
    user = f"race-{uuid.uuid4().hex[:8]}"
    msg = InboundMessage(Platform.WECOM, "default", uuid.uuid4().hex, user, user, "转人工")
    with Session(engine) as s:
        conv_id = db.ensure_conversation(s, msg).id or 0
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def race(trigger: str) -> None:
        barrier.wait()
        results.append(handoff.transition(engine, conv_id, handoff.HUMAN, trigger, actor=trigger))

    threads = [
        threading.Thread(target=race, args=(t,))
        for t in ["user_request", "model", "admin", "anger"] * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False] * 7 + [True]
    with Session(engine) as s:
        events = s.exec(select(HandoffEvent).where(HandoffEvent.conversation_id == conv_id)).all()
        assert len(events) == 1
        assert s.get(Conversation, conv_id).state == "human"
    with pytest.raises(ValueError, match="no transition"):
        handoff.transition(engine, conv_id, handoff.BOT, "user_request")


def test_transcript_links_expire_and_bind_the_conversation(make_settings) -> None:
    settings = make_settings(core={"admin_token": TOKEN}, handoff={"link_ttl_s": 60})
    link = handoff.transcript_link(settings, 7, now=1000.0)
    exp, sig = link.split("exp=")[1].split("&sig=")
    assert exp == "1060"
    assert handoff.link_valid(settings, 7, exp, sig, now=1059)
    assert not handoff.link_valid(settings, 7, exp, sig, now=1061)  # expired
    assert not handoff.link_valid(settings, 8, exp, sig, now=1000)  # another conversation
    other = make_settings(core={"admin_token": "rotated"})
    assert not handoff.link_valid(other, 7, exp, sig, now=1000)  # token rotated: revoked
