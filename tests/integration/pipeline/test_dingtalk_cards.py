"""DingTalk AI cards end to end: a signed robot POST (or a Stream frame) → intake → Redis/Celery
→ agent → a streaming model → an AI card that grows as the answer does, then ends FINISHED.

Real HTTP with real signatures, a real WebSocket for Stream mode, real Redis, a real Celery
worker; the DingTalk API (with AI cards) and Stream gateway, vLLM and DashScope are fakes on
loopback.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.dingtalk import cards
from adapters.dingtalk import simulate as dingtalk_simulate
from bot import keys
from bot.stream import runner as stream
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import TEMPLATE_ID, DingTalkFakeState, make_dingtalk_app
from tests.fakes.dingtalk_stream import GatewayState, add_gateway_routes
from tests.integration.adapters.streams import Streams
from tests.integration.conftest import wait_for
from tests.integration.pipeline import test_stream_handoff as handoff
from tests.integration.worker_process import start_worker, stop_worker, worker_env

pytestmark = pytest.mark.timeout(90)

# A long answer that trickles in: several card updates before the end.
LONG = "您好！退货请在订单页点击申请售后，选择退货原因并上传照片，审核通过后寄回商品即可。"
STAFF = "manager4220"


@pytest.fixture
def dingtalk() -> Iterator[tuple[DingTalkFakeState, GatewayState, str]]:
    state = DingTalkFakeState(app_secret=secrets.token_urlsafe(16))
    gateway = GatewayState(client_id=state.app_key, client_secret=state.app_secret)
    app = make_dingtalk_app(state)
    add_gateway_routes(app, gateway)
    with serve(app) as url:
        yield state, gateway, url


def section(state: DingTalkFakeState, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "app_key": state.app_key,
        "app_secret": state.app_secret,
        "robot_code": state.robot_code,
        "api_base": url,
        # The fake sessionWebhook lives on loopback: trust that host, as prod trusts DingTalk's.
        "oapi_base": "http://127.0.0.1",
        "card_template_id": TEMPLATE_ID,
        "card_updates_per_s": 5,
        **extra,
    }


@pytest.fixture
async def stack(make_settings, make_client, celery_worker, fakes, wecom_app, dingtalk):
    state, _, url = dingtalk
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"], dashscope=models["dashscope"], dingtalk=section(state, url)
    )
    client = await make_client(settings)
    celery_worker(settings)
    # A trickling model: 2 characters every 40 ms.
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.04
    return client


def body(state: DingTalkFakeState, url: str, text: str, msg_id: str, **kw: Any) -> dict[str, Any]:
    return dingtalk_simulate.robot_body(
        text,
        msg_id=msg_id,
        staff_id=STAFF,
        conversation_id="cidCards==",
        session_webhook=state.session_url(url),
        create_at_ms=int(time.time() * 1000),
        robot_code=state.robot_code,
        **kw,
    )


async def post(
    client, state: DingTalkFakeState, url: str, text: str, msg_id: str, nick: str = "", **kw
) -> None:
    stamp = int(time.time() * 1000)
    headers = dingtalk_simulate.robot_headers(app_secret=state.app_secret, timestamp_ms=stamp)
    message = body(state, url, text, msg_id, **kw)
    if nick:
        message["senderNick"] = nick
    resp = await client.post("/webhooks/dingtalk", json=message, headers=headers)
    assert resp.status == 200, await resp.text()


def _finished(state: DingTalkFakeState) -> bool:
    return bool(state.cards) and all(
        c.flow_status == cards.FLOW_FINISHED for c in state.cards.values()
    )


async def test_a_group_answer_streams_into_one_card_that_ends_finished(
    stack, fakes, dingtalk
) -> None:
    state, _, url = dingtalk
    fakes.vllm.script(LONG)
    await post(stack, state, url, "怎么退货", "msgCard-1==", nick="张三", group=True)
    await wait_for(lambda: _finished(state))
    card = state.card()
    assert card.space == "dtv1.card//IM_GROUP.cidCards=="
    assert card.at_users == {STAFF: "张三"}
    # Created with the first words, updated several times as it grew (≤ 5/s), each update the
    # full text so far under a new guid; the last one is final and is the whole answer.
    texts = [u[2] for u in card.updates]
    assert len(texts) >= 3
    assert all(LONG.startswith(t) for t in texts[:-1]), texts
    assert [u[3] for u in card.updates] == [False] * (len(texts) - 1) + [True]
    assert len({u[0] for u in card.updates}) == len(texts)
    assert card.text() == texts[-1]
    assert card.text().startswith(LONG)
    assert "参考：" in card.text()  # the sources line every platform gets
    # At most 5 per second, the final one aside (the model would allow 25): counted over the
    # card's typing life, as single gaps vary with the machine's load.
    typing = [u[5] for u in card.updates[:-1]]
    assert len(typing) - 1 <= 5 * (typing[-1] - typing[0]) + 1, typing
    assert state.sent == []  # no markdown reply besides the card
    # DingTalk pushes the same message again: nothing changes.
    await post(stack, state, url, "怎么退货", "msgCard-1==", group=True)
    await asyncio.sleep(1.0)
    assert len(state.cards) == 1
    assert len(state.matching("/v1.0/card/instances/createAndDeliver")) == 1


async def test_without_the_card_permission_markdown_replies_and_remembered(
    stack, fakes, dingtalk, sync_redis, caplog
) -> None:
    state, _, url = dingtalk
    state.card_permission = False
    caplog.set_level(logging.WARNING, logger="adapters.dingtalk.streaming")
    fakes.vllm.script(LONG, "第二个回答")
    await post(stack, state, url, "怎么退货", "msgPlain-1==")
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["via"], state.sent[0]["text"][: len(LONG)]) == ("session", LONG)
    assert sync_redis.exists(keys.dingtalk_cards_off("default"))
    assert len([r for r in caplog.records if "Card.Instance.Write" in r.getMessage()]) == 1
    await post(stack, state, url, "发票怎么开", "msgPlain-2==")
    await wait_for(lambda: len(state.sent) == 2)
    assert state.sent[1]["text"] == "第二个回答"
    assert len(state.matching("/v1.0/card/instances/createAndDeliver")) == 1  # not asked again
    assert state.cards == {}


@pytest.fixture
async def streams():
    def run(settings: Any, stop: asyncio.Event) -> Any:
        return stream.run_dingtalk(
            settings,
            stop,
            lease_ttl_s=1.5,
            liveness_s=10,
            heartbeat_s=None,
            backoff_base_s=0.1,
            status_every_s=0.2,
        )

    s = Streams(run)
    yield s
    await s.stop_all()


async def test_a_stream_mode_message_gets_its_card_in_the_robot_chat(
    make_settings, celery_worker, fakes, wecom_app, dingtalk, streams
) -> None:
    state, gateway, url = dingtalk
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"],
        dashscope=models["dashscope"],
        dingtalk=section(state, url, stream=True),
    )
    celery_worker(settings)
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.04
    fakes.vllm.script(LONG)
    streams.start(settings)
    await wait_for(lambda: gateway.live() == 1)
    gateway.push_robot_message(body(state, url, "怎么退货", "msgStreamCard-1=="))
    await wait_for(lambda: _finished(state))
    card = state.card()
    assert (card.space, card.at_users) == (f"dtv1.card//IM_ROBOT.{STAFF}", {})
    assert card.text().startswith(LONG)
    assert card.finalized
    assert state.sent == []


@pytest.mark.timeout(200)
async def test_worker_killed_mid_stream_finishes_the_same_card(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path, dingtalk
) -> None:
    """A `bot worker` SIGKILLed mid-answer: the redelivered turn finishes the same card, which
    ends FINISHED with the whole answer; no second card, no markdown reply."""
    state, _, url = dingtalk
    dingtalk_env = {
        f"DINGTALK_{name.upper()}": str(value)
        for name, value in section(state, url, card_updates_per_s=10).items()
    }
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"],
        dashscope=models["dashscope"],
        dingtalk=section(state, url, card_updates_per_s=10),
    )
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        **dingtalk_env,
        VLLM_TIMEOUT_S="60",
        # Unacked messages come back after 2 s, locks expire in 2 s.
        BOT_BROKER_VISIBILITY_TIMEOUT_S="2",
        BOT_CONVERSATION_LOCK_TTL_S="2",
    )
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 1.0  # slow enough to kill the worker between two pieces
    answer = "ANSWER: 你们支持哪些支付方式"

    first = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker1.log")
    try:
        await post(client, state, url, "你们支持哪些支付方式", "msgCrash-1==", group=True)
        # The card is in the chat and has been typed into at least once.
        # A worker process starts slowly on a loaded machine: allow it a minute.
        await wait_for(lambda: bool(state.cards) and bool(state.card().updates), timeout_s=60)
    finally:
        stop_worker(first, signal.SIGKILL)  # mid-answer, unacked: as if the machine died
    card = state.card()
    assert not card.finalized
    before = len(card.updates)

    fakes.vllm.chunk_delay_s = 0.1
    second = start_worker(env, tmp_path, concurrency=4, log=tmp_path / "worker2.log")
    try:
        await wait_for(lambda: card.flow_status == cards.FLOW_FINISHED, timeout_s=90)
    finally:
        stop_worker(second)
    assert len(state.cards) == 1
    assert len(state.matching("/v1.0/card/instances/createAndDeliver")) == 1
    assert len(card.updates) > before
    assert card.finalized
    assert [u[3] for u in card.updates].count(True) == 1  # finalized once, by the last update
    assert card.text().startswith(answer)
    # Every update showed a beginning of the answer (the new attempt restarted cleanly).
    assert all(answer.startswith(u[2]) or u[2] == card.text() for u in card.updates)
    assert state.sent == []


async def test_a_card_that_hands_over_mid_stream_ends_with_the_notice(
    make_settings, make_client, celery_worker, fakes, wecom_app, dingtalk
) -> None:
    state, _, url = dingtalk
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"],
        dashscope=models["dashscope"],
        dingtalk=section(state, url),
        handoff=handoff.HANDOFF,
    )
    client = await make_client(settings)
    celery_worker(settings)
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.04
    fakes.vllm.script(LONG)
    await post(client, state, url, "量子引力的最新进展", "msgHandoff-1==", group=True)
    await wait_for(lambda: _finished(state))
    card = state.card()
    texts = [u[2] for u in card.updates]
    # The answer was being typed when the turn handed over; the notice replaced it.
    assert any(t and LONG.startswith(t) for t in texts), texts
    assert (card.text(), texts[-1]) == (handoff.NOTICE, handoff.NOTICE)
    assert card.finalized
    assert state.sent == []  # the notice is the card's ending, not a second message
