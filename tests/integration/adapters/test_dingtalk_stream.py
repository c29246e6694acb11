"""DingTalk Stream mode end to end: fake gateway → StreamClient → intake → Celery → sessionWebhook.

Real WebSocket and HTTP on loopback, real Redis (lease, dedupe, queue), a real Celery worker
(thread pool); the DingTalk gateway and API and both model backends are fake servers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import redis

from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.dingtalk.stream import StreamClient
from bot import keys
from bot.domain import InboundMessage
from bot.stream import runner as stream
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.fakes.dingtalk_stream import GatewayState, add_gateway_routes
from tests.integration.adapters.streams import Streams
from tests.integration.conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def dingtalk_gw() -> Iterator[tuple[DingTalkFakeState, GatewayState, str]]:
    state = DingTalkFakeState(app_secret=secrets.token_urlsafe(16))
    gateway = GatewayState(client_id=state.app_key, client_secret=state.app_secret)
    app = make_dingtalk_app(state)
    add_gateway_routes(app, gateway)
    with serve(app) as url:
        yield state, gateway, url


@pytest.fixture
def stream_settings(make_settings, celery_worker, fakes, wecom_app, dingtalk_gw):
    state, _, url = dingtalk_gw
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"],
        dashscope=models["dashscope"],
        dingtalk={
            "app_key": state.app_key,
            "app_secret": state.app_secret,
            "robot_code": state.robot_code,
            "api_base": url,
            # The fake sessionWebhook lives on loopback: trust that host, as prod trusts DingTalk's.
            "oapi_base": "http://127.0.0.1",
            "stream": True,
        },
    )
    celery_worker(settings)
    return settings


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


def _body(state: DingTalkFakeState, url: str, text: str, msg_id: str, **kw: Any) -> dict[str, Any]:
    return dingtalk_simulate.robot_body(
        text,
        msg_id=msg_id,
        staff_id="manager4220",
        conversation_id="cidStream==",
        session_webhook=state.session_url(url),
        create_at_ms=int(time.time() * 1000),
        robot_code=state.robot_code,
        **kw,
    )


def _acked(gateway: GatewayState, frame_id: str, code: int = 200) -> bool:
    return [a["code"] for a in gateway.acks_for(frame_id)] == [code]


async def test_pushed_message_is_acked_and_answered_once(
    stream_settings, streams, dingtalk_gw, fakes, aredis
) -> None:
    state, gateway, url = dingtalk_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    frame_id = gateway.push_robot_message(_body(state, url, "流模式问题甲", "msgStream-1=="))
    await wait_for(lambda: _acked(gateway, frame_id))
    assert json.loads(gateway.acks_for(frame_id)[0]["data"]) == {"response": None}
    await wait_for(lambda: len(state.sent) == 1)
    (sent,) = state.sent
    assert (sent["via"], sent["text"]) == ("session", "ANSWER: 流模式问题甲")
    # SYSTEM ping is answered too, echoing its data.
    ping_id = gateway.push_system("ping", '{"opaque":"p1"}')
    await wait_for(lambda: _acked(gateway, ping_id))
    assert gateway.acks_for(ping_id)[0]["data"] == '{"opaque":"p1"}'
    # Readiness: the holder publishes its status for /readyz as soon as it connects.
    deadline = time.monotonic() + 2
    status = await stream.read_status(aredis, "dingtalk", "default")
    while not (status and status["connected"]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await stream.read_status(aredis, "dingtalk", "default")
    assert status is not None
    assert status["connected"] is True
    assert status["connects"] == 1
    await asyncio.sleep(1.0)
    assert len(state.sent) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_event_frames_are_acked_and_recorded_once(
    stream_settings, streams, dingtalk_gw
) -> None:
    from sqlmodel import Session, select

    from bot.db.engine import get_engine
    from bot.db.models import PlatformEvent

    state, gateway, _ = dingtalk_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    data = {"openConversationId": "cidStreamGroup==", "operator": "boss", "userId": ["u1"]}
    first = gateway.push_event("chat_add_member", data, event_id="ev-stream-1")
    await wait_for(lambda: _acked(gateway, first))
    assert json.loads(gateway.acks_for(first)[0]["data"])["status"] == "SUCCESS"
    # The gateway pushes the same event again (same eventId, a new frame).
    again = gateway.push_event("chat_add_member", data, event_id="ev-stream-1")
    await wait_for(lambda: _acked(gateway, again))
    engine = get_engine(stream_settings.core.effective_database_url())

    def rows() -> list[PlatformEvent]:
        with Session(engine) as session:
            return list(session.exec(select(PlatformEvent)))

    await wait_for(lambda: len(rows()) == 1)
    await asyncio.sleep(1.0)
    (row,) = rows()
    assert (row.event_type, row.event_id, row.conversation_id) == (
        "chat_add_member",
        "event:ev-stream-1",
        "cidStreamGroup==",
    )
    assert json.loads(row.summary)["CorpId"] == "ding-fake-corp"
    assert state.sent == []  # recorded, never answered (no welcome text configured)


async def test_redelivered_frame_is_not_answered_twice(
    stream_settings, streams, dingtalk_gw, fakes
) -> None:
    state, gateway, url = dingtalk_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    body = _body(state, url, "流模式问题乙", "msgStream-2==")
    first = gateway.push_robot_message(body, message_id="frame-2")
    await wait_for(lambda: _acked(gateway, first))
    # The gateway delivers it again (same msgId; the SDK says redelivery happens): ACK, no reply.
    again = gateway.push_robot_message(body, message_id="frame-2b")
    await wait_for(lambda: _acked(gateway, again))
    # A group message that does not @ the robot is acknowledged and dropped.
    silent = gateway.push_robot_message(
        _body(state, url, "大家好", "msgStream-3==", group=True, at_robot=False)
    )
    await wait_for(lambda: _acked(gateway, silent))
    await wait_for(lambda: len(state.sent) == 1)
    await asyncio.sleep(1.5)
    assert [s["text"] for s in state.sent] == ["ANSWER: 流模式问题乙"]
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_dropped_connection_reconnects_and_keeps_answering(
    stream_settings, streams, dingtalk_gw
) -> None:
    state, gateway, url = dingtalk_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    gateway.push_robot_message(_body(state, url, "第一个问题", "msgStream-4=="))
    await wait_for(lambda: len(state.sent) == 1)
    # A network failure: no close frame.
    gateway.drop()
    await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1)
    gateway.push_robot_message(_body(state, url, "第二个问题", "msgStream-5=="))
    await wait_for(lambda: len(state.sent) == 2)
    # The server asks for a reconnect: ACK, close, connect again.
    bye = gateway.push_system("disconnect")
    await wait_for(lambda: _acked(gateway, bye))
    await wait_for(lambda: gateway.accepted == 3 and gateway.live() == 1)
    gateway.push_robot_message(_body(state, url, "第三个问题", "msgStream-6=="))
    await wait_for(lambda: len(state.sent) == 3)
    assert [s["text"] for s in state.sent] == [
        "ANSWER: 第一个问题",
        "ANSWER: 第二个问题",
        "ANSWER: 第三个问题",
    ]
    # Each connection used its own one-time ticket.
    assert len(gateway.matching("/v1.0/gateway/connections/open")) == 3


async def test_two_replicas_one_connection_and_failover(
    stream_settings, streams, dingtalk_gw
) -> None:
    state, gateway, url = dingtalk_gw
    stop_a, task_a = streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    streams.start(stream_settings)
    await asyncio.sleep(2.0)  # longer than the lease TTL: B keeps polling, never connects
    assert (gateway.accepted, gateway.live()) == (1, 1)
    # The holder goes away; the other replica takes the connection within the lease TTL.
    stop_a.set()
    await asyncio.wait_for(task_a, 5)
    await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1, timeout_s=3)
    gateway.push_robot_message(_body(state, url, "换人了吗", "msgStream-7=="))
    await wait_for(lambda: len(state.sent) == 1)
    await asyncio.sleep(0.5)
    assert gateway.live() == 1


async def test_frame_is_nacked_until_it_is_queued(dingtalk_gw) -> None:
    """A callback that cannot queue answers 500, so the gateway redelivers; then 200."""
    state, gateway, url = dingtalk_gw
    adapter = DingTalkAdapter(
        app_key=state.app_key,
        app_secret=state.app_secret,
        api_base=url,
        oapi_base="http://127.0.0.1",
        tokens=None,
    )
    queued: list[InboundMessage] = []
    fail = [True]

    async def on_message(msg: InboundMessage) -> None:
        if fail[0]:
            raise RuntimeError("broker down")
        queued.append(msg)

    async with aiohttp.ClientSession() as http:
        client = StreamClient(
            http=http,
            api_base=url,
            app_key=state.app_key,
            app_secret=state.app_secret,
            parse=lambda body: adapter.parse_robot_message(body, now=time.time()),
            on_message=on_message,
            heartbeat_s=None,
        )
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: client.state.connected and gateway.live() == 1)
            body = _body(state, url, "hi", "msgStream-8==")
            first = gateway.push_robot_message(body, message_id="f-8")
            await wait_for(lambda: _acked(gateway, first, 500))
            fail[0] = False
            again = gateway.push_robot_message(body, message_id="f-8")
            await wait_for(lambda: len(gateway.acks_for(again)) == 2)
            assert [a["code"] for a in gateway.acks_for(again)] == [500, 200]
            assert [m.event_id for m in queued] == ["msgStream-8=="]
            bad = gateway.push_robot_message({"msgtype": "text"})  # no msgId
            await wait_for(lambda: _acked(gateway, bad, 400))
            assert client.state.last_frame_at is not None
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)
        assert not client.state.connected


async def test_wrong_secret_keeps_retrying_without_connecting(dingtalk_gw) -> None:
    state, gateway, url = dingtalk_gw

    async def never(_msg: InboundMessage) -> None:
        raise AssertionError("no message expected")

    async with aiohttp.ClientSession() as http:
        client = StreamClient(
            http=http,
            api_base=url,
            app_key=state.app_key,
            app_secret="wrong",
            parse=lambda _body: None,
            on_message=never,
            backoff_base_s=0.05,
            heartbeat_s=None,
        )
        task = asyncio.create_task(client.run())
        await wait_for(lambda: client.state.failures >= 3)
        client.stop()
        await asyncio.wait_for(task, 5)
    assert gateway.accepted == 0
    assert not client.state.connected


async def test_event_that_cannot_be_queued_is_acked_later(dingtalk_gw) -> None:
    """An EVENT frame whose queueing fails gets status LATER (redelivered), then SUCCESS."""
    state, gateway, url = dingtalk_gw
    queued: list[InboundMessage] = []
    fail = [True]

    async def on_message(msg: InboundMessage) -> None:
        if fail[0]:
            raise RuntimeError("broker down")
        queued.append(msg)

    async with aiohttp.ClientSession() as http:
        client = StreamClient(
            http=http,
            api_base=url,
            app_key=state.app_key,
            app_secret=state.app_secret,
            parse=lambda _body: None,
            on_message=on_message,
            heartbeat_s=None,
        )
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: client.state.connected and gateway.live() == 1)
            data = {"ChatId": "chat1"}
            first = gateway.push_event("chat_disband", data, event_id="ev-later")
            await wait_for(lambda: _acked(gateway, first))
            assert json.loads(gateway.acks_for(first)[0]["data"])["status"] == "LATER"
            fail[0] = False
            again = gateway.push_event("chat_disband", data, event_id="ev-later")
            await wait_for(lambda: _acked(gateway, again))
            assert json.loads(gateway.acks_for(again)[0]["data"])["status"] == "SUCCESS"
            (msg,) = queued
            assert (msg.event_id, msg.event, msg.route["chatId"]) == (
                "event:ev-later",
                "chat_disband",
                "chat1",
            )
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)


async def test_silent_connection_is_replaced_by_the_watchdog(dingtalk_gw) -> None:
    state, gateway, url = dingtalk_gw

    async def never(_msg: InboundMessage) -> None:
        raise AssertionError("no message expected")

    async with aiohttp.ClientSession() as http:
        client = StreamClient(
            http=http,
            api_base=url,
            app_key=state.app_key,
            app_secret=state.app_secret,
            parse=lambda _body: None,
            on_message=never,
            liveness_s=0.5,
            backoff_base_s=0.05,
            heartbeat_s=None,
        )
        task = asyncio.create_task(client.run())
        try:
            # The gateway counts the socket before the client marks itself connected: wait for both.
            await wait_for(lambda: gateway.accepted >= 2, timeout_s=5)
            await wait_for(lambda: client.state.connects >= 2, timeout_s=5)
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)


async def test_readyz_shows_the_stream(stream_settings, streams, make_client, dingtalk_gw) -> None:
    _, gateway, _ = dingtalk_gw
    client = await make_client(stream_settings)
    resp = await client.get("/readyz")
    body = await resp.json()
    # Reported, but the web process still serves: its readiness is Redis, database, broker.
    assert resp.status == 200
    assert body["dingtalk_stream"].startswith("down")
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)

    async def ready() -> bool:
        r = await client.get("/readyz")
        return r.status == 200 and (await r.json())["dingtalk_stream"] == "ok"

    deadline = time.monotonic() + 5
    while not await ready():
        assert time.monotonic() < deadline, await (await client.get("/readyz")).text()
        await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_killing_the_holder_process_moves_the_connection(
    redis_url, tmp_path, dingtalk_gw
) -> None:
    """Two `bot stream dingtalk` processes: one connection; SIGKILL it, the other takes over."""
    state, gateway, url = dingtalk_gw
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DINGTALK_", "REDIS_"))}
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "DINGTALK_APP_KEY": state.app_key,
        "DINGTALK_APP_SECRET": state.app_secret,
        "DINGTALK_API_BASE": url,
        "DINGTALK_STREAM": "true",
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "stream", "dingtalk"],
            env=env,
            cwd=tmp_path,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [start()]
    try:
        await wait_for(lambda: gateway.live() == 1, timeout_s=20)
        procs.append(start())
        await asyncio.sleep(4)  # B is up and polling the lease
        assert (gateway.accepted, gateway.live()) == (1, 1)
        assert procs[1].poll() is None
        os.kill(procs[0].pid, signal.SIGKILL)  # no release: B waits out the 10 s lease
        await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1, timeout_s=20)
        # A clean stop releases the lease and exits 0.
        procs[1].send_signal(signal.SIGTERM)
        await wait_for(lambda: procs[1].poll() is not None, timeout_s=10)
        assert procs[1].returncode == 0
        await wait_for(lambda: gateway.live() == 0, timeout_s=5)
        holder = redis.Redis.from_url(redis_url)
        try:
            assert holder.get(keys.stream_holder("dingtalk", "default")) is None
        finally:
            holder.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def test_idle_connection_with_heartbeat_is_kept(dingtalk_gw) -> None:
    """Pongs to our heartbeat count as life: a quiet, healthy connection is not replaced."""
    state, gateway, url = dingtalk_gw

    async def never(_msg: InboundMessage) -> None:
        raise AssertionError("no message expected")

    async with aiohttp.ClientSession() as http:
        client = StreamClient(
            http=http,
            api_base=url,
            app_key=state.app_key,
            app_secret=state.app_secret,
            parse=lambda _body: None,
            on_message=never,
            # Wide enough that a pong delayed by a loaded test machine (three test processes
            # on two cores) is not taken for a dead connection (1.5 s was not, in one full
            # run); the wait still spans more than one window.
            liveness_s=3.0,
            heartbeat_s=0.2,
        )
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: gateway.live() == 1)
            await asyncio.sleep(4.0)
            assert (gateway.accepted, gateway.live()) == (1, 1)
            assert client.state.connected
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)
