"""Feishu long connection end to end: fake gateway → FeishuWsClient → intake → Celery → reply API.

Real WebSocket (protobuf frames) and HTTP on loopback, real Redis (lease, dedupe, queue), a
real Celery worker (thread pool); the Feishu gateway and API and the model backends are fakes.
"""

from __future__ import annotations

import asyncio
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

from adapters.feishu import simulate as feishu_simulate
from adapters.feishu.ws.client import FeishuWsClient, fetch_endpoint
from bot.errors import PlatformRejectedError, PlatformUnavailableError
from bot.stream import runner as stream
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.fakes.feishu_ws import SERVICE_ID, WsGatewayState, add_ws_routes
from tests.integration.adapters.streams import Streams
from tests.integration.conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(90)

BOT = "ou_bot_ws"
TOKEN = "ws-verification-token"


@pytest.fixture
def feishu_gw() -> Iterator[tuple[FeishuFakeState, WsGatewayState, str]]:
    state = FeishuFakeState(app_id="cli_ws", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    gateway = WsGatewayState(app_id=state.app_id, app_secret=state.app_secret, ping_interval_s=0.3)
    app = make_feishu_app(state)
    add_ws_routes(app, gateway)
    with serve(app) as url:
        yield state, gateway, url


def feishu_section(state: FeishuFakeState, url: str) -> dict[str, Any]:
    # No FEISHU_BOT_OPEN_ID: the holder asks bot/v3/info, as a real deployment would.
    return {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": TOKEN,
        "api_base": url,
        "stream": True,
    }


@pytest.fixture
def stream_settings(make_settings, celery_worker, fakes, wecom_app, feishu_gw):
    state, _, url = feishu_gw
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"], dashscope=models["dashscope"], feishu=feishu_section(state, url)
    )
    celery_worker(settings)
    return settings


@pytest.fixture
async def streams():
    def run(settings: Any, stop: asyncio.Event) -> Any:
        return stream.run_feishu(
            settings, stop, lease_ttl_s=1.5, backoff_base_s=0.1, status_every_s=0.2
        )

    s = Streams(run)
    yield s
    await s.stop_all()


def event(text: str, message_id: str, **kw: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    body = feishu_simulate.text_event(
        text,
        user_open_id="ou_wang",
        message_id=message_id,
        chat_id="oc_group_ws" if kw.get("group") else "oc_p2p_wang",
        create_time_ms=now_ms,
        bot_open_id=BOT,
        **kw,
    )
    return feishu_simulate.envelope(
        "im.message.receive_v1",
        body,
        app_id="cli_ws",
        verification_token=TOKEN,
        event_id=secrets.token_hex(8),
        create_time_ms=now_ms,
    )


def acked(gateway: WsGatewayState, message_id: str, code: int = 200) -> bool:
    return [a["code"] for a in gateway.acks_for(message_id)] == [code]


async def test_split_event_is_acked_and_answered_once(
    stream_settings, streams, feishu_gw, fakes, aredis
) -> None:
    state, gateway, _ = feishu_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    # A payload split into 3 frames (the last sent first) is joined and answered once.
    frame_id = gateway.push_event(event("长连接问题甲", "om_ws_1"), parts=3)
    await wait_for(lambda: acked(gateway, frame_id))
    (ack,) = gateway.acks_for(frame_id)
    assert ack["biz_rt"].isdigit()
    assert ack["frame"].header("trace_id")
    await wait_for(lambda: len(state.sent) == 1)
    (sent,) = state.sent
    assert (sent["reply_to"], sent["text"], sent["msg_type"]) == (
        "om_ws_1",
        "ANSWER: 长连接问题甲",
        "text",
    )
    # Redelivered (same message, new frame id): acknowledged, not answered again.
    again = gateway.push_event(event("长连接问题甲", "om_ws_1"))
    await wait_for(lambda: acked(gateway, again))
    # The client pings with the service id; the gateway's pongs keep it alive.
    await wait_for(lambda: len(gateway.pings()) >= 2)
    assert {p.service for p in gateway.pings()} == {SERVICE_ID}
    status = await stream.read_status(aredis, "feishu", "default")
    assert status is not None
    assert status["connected"] is True
    await asyncio.sleep(1.0)
    assert len(state.sent) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_group_mentions_use_the_fetched_open_id(stream_settings, streams, feishu_gw) -> None:
    state, gateway, _ = feishu_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    silent = gateway.push_event(event("大家好", "om_ws_g1", group=True))
    other = gateway.push_event(
        event(
            "@_user_1 你看下",
            "om_ws_g2",
            group=True,
            mentions=[{"key": "@_user_1", "id": {"open_id": "ou_someone"}, "name": "某人"}],
        )
    )
    mine = gateway.push_event(event("发票怎么开", "om_ws_g3", group=True, mention_bot=True))
    for frame_id in (silent, other, mine):
        await wait_for(lambda f=frame_id: acked(gateway, f))
    await wait_for(lambda: len(state.sent) == 1)
    await asyncio.sleep(0.5)
    assert [(s["reply_to"], s["text"], s["mentions"]) for s in state.sent] == [
        ("om_ws_g3", "ANSWER: 发票怎么开", ["ou_wang"])
    ]
    assert len(state.matching("/open-apis/bot/v3/info")) == 1


async def test_unknown_open_id_nacks_group_mentions_for_redelivery(
    stream_settings, streams, feishu_gw
) -> None:
    state, gateway, _ = feishu_gw
    state.bot_info_fail = True
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    body = event("在吗", "om_ws_u1", group=True, mention_bot=True)
    first = gateway.push_event(body)
    await wait_for(lambda: acked(gateway, first, 500))
    # p2p needs no open_id and flows meanwhile.
    p2p = gateway.push_event(event("私聊", "om_ws_u2"))
    await wait_for(lambda: acked(gateway, p2p))
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["reply_to"] == "om_ws_u2"


async def test_server_close_and_network_drop_reconnect_without_loss(
    stream_settings, streams, feishu_gw
) -> None:
    state, gateway, _ = feishu_gw
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    gateway.push_event(event("第一个问题", "om_ws_r1"))
    await wait_for(lambda: len(state.sent) == 1)
    gateway.close_all()  # the server closes (a deploy on its side)
    await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1)
    gateway.push_event(event("第二个问题", "om_ws_r2"))
    await wait_for(lambda: len(state.sent) == 2)
    gateway.drop()  # no close frame at all
    await wait_for(lambda: gateway.accepted == 3 and gateway.live() == 1)
    gateway.push_event(event("第三个问题", "om_ws_r3"))
    await wait_for(lambda: len(state.sent) == 3)
    assert [s["text"] for s in state.sent] == [
        "ANSWER: 第一个问题",
        "ANSWER: 第二个问题",
        "ANSWER: 第三个问题",
    ]
    # Each connection asked for its own endpoint (one-time URL).
    assert len(gateway.matching("/callback/ws/endpoint")) == 3


async def test_two_replicas_one_connection_and_failover(
    stream_settings, streams, feishu_gw
) -> None:
    state, gateway, _ = feishu_gw
    stop_a, task_a = streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)
    streams.start(stream_settings)
    await asyncio.sleep(2.0)  # longer than the lease TTL: B keeps polling, never connects
    assert (gateway.accepted, gateway.live()) == (1, 1)
    stop_a.set()
    await asyncio.wait_for(task_a, 5)
    await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1, timeout_s=3)
    gateway.push_event(event("换人了吗", "om_ws_f1"))
    await wait_for(lambda: len(state.sent) == 1)


async def test_readyz_and_metrics_show_the_stream(
    stream_settings, streams, make_client, feishu_gw
) -> None:
    _, gateway, _ = feishu_gw
    client = await make_client(stream_settings)
    resp = await client.get("/readyz")
    assert resp.status == 200  # reported, not counted: the web process still serves
    assert (await resp.json())["feishu_stream"].startswith("down")
    metrics = await (await client.get("/metrics")).text()
    assert 'bot_stream_up{app="default",platform="feishu"} 0.0' in metrics
    streams.start(stream_settings)
    await wait_for(lambda: gateway.live() == 1)

    async def ready() -> bool:
        r = await client.get("/readyz")
        return r.status == 200 and (await r.json())["feishu_stream"] == "ok"

    deadline = time.monotonic() + 5
    while not await ready():
        assert time.monotonic() < deadline, await (await client.get("/readyz")).text()
        await asyncio.sleep(0.1)
    metrics = await (await client.get("/metrics")).text()
    assert 'bot_stream_up{app="default",platform="feishu"} 1.0' in metrics


async def test_silent_connection_is_replaced_and_refusals_are_retried(feishu_gw) -> None:
    state, gateway, url = feishu_gw
    gateway.ping_interval_s = 30  # no pong within the watchdog's 0.5 s

    async def never(_payload: bytes) -> None:
        raise AssertionError("no event expected")

    async with aiohttp.ClientSession() as http:
        client = FeishuWsClient(
            http=http,
            api_base=url,
            app_id=state.app_id,
            app_secret=state.app_secret,
            on_event=never,
            liveness_s=0.5,
            backoff_base_s=0.05,
        )
        task = asyncio.create_task(client.run())
        try:
            # Pings go unanswered for 30 s: the watchdog replaces the connection.
            await wait_for(lambda: client.state.connects >= 2, timeout_s=5)
            # Too many connections (514 / 1000040350): refused, retried with backoff.
            gateway.refuse_with = {
                "handshake-status": "514",
                "handshake-msg": "exceed conn limit",
                "handshake-autherrcode": "1000040350",
            }
            failures = client.state.failures
            await wait_for(lambda: client.state.failures >= failures + 2, timeout_s=5)
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)
    assert not client.state.connected


async def test_wrong_secret_never_connects(feishu_gw) -> None:
    state, gateway, url = feishu_gw

    async def never(_payload: bytes) -> None:
        raise AssertionError("no event expected")

    async with aiohttp.ClientSession() as http:
        client = FeishuWsClient(
            http=http,
            api_base=url,
            app_id=state.app_id,
            app_secret="wrong",
            on_event=never,
            backoff_base_s=0.05,
        )
        task = asyncio.create_task(client.run())
        await wait_for(lambda: client.state.failures >= 3)
        client.stop()
        await asyncio.wait_for(task, 5)
    assert gateway.accepted == 0


@pytest.mark.timeout(60)
async def test_killing_the_holder_process_moves_the_connection(
    redis_url, tmp_path, feishu_gw
) -> None:
    """Two `bot stream feishu` processes: one connection; SIGKILL it, the other takes over."""
    state, gateway, url = feishu_gw
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("FEISHU_", "REDIS_"))}
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "FEISHU_APP_ID": state.app_id,
        "FEISHU_APP_SECRET": state.app_secret,
        "FEISHU_VERIFICATION_TOKEN": TOKEN,
        "FEISHU_API_BASE": url,
        "FEISHU_STREAM": "true",
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "stream", "feishu"],
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
        await asyncio.sleep(3)  # B is up and polling the lease
        assert (gateway.accepted, gateway.live()) == (1, 1)
        killed_at = time.monotonic()
        os.kill(procs[0].pid, signal.SIGKILL)  # no release: B waits out the 10 s lease
        await wait_for(lambda: gateway.accepted == 2 and gateway.live() == 1, timeout_s=20)
        assert time.monotonic() - killed_at < 15
        procs[1].send_signal(signal.SIGTERM)
        await wait_for(lambda: procs[1].poll() is not None, timeout_s=10)
        assert procs[1].returncode == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


async def test_endpoint_errors_are_mapped(feishu_gw) -> None:
    state, gateway, url = feishu_gw
    async with aiohttp.ClientSession() as http:
        ws_url, config = await fetch_endpoint(http, url, state.app_id, state.app_secret)
        assert ws_url.startswith("ws://")
        assert "service_id=" in ws_url
        assert config.ping_interval_s == gateway.ping_interval_s
        (request,) = gateway.matching("/callback/ws/endpoint")
        assert request.json == {"AppID": state.app_id, "AppSecret": state.app_secret}
        with pytest.raises(PlatformRejectedError):
            await fetch_endpoint(http, url, state.app_id, "wrong")
        gateway.fail_next(body={"code": 1, "msg": "system busy"}, status=200)
        with pytest.raises(PlatformUnavailableError):
            await fetch_endpoint(http, url, state.app_id, state.app_secret)
        gateway.fail_next(status=502)
        with pytest.raises(PlatformUnavailableError):
            await fetch_endpoint(http, url, state.app_id, state.app_secret)
        gateway.fail_next(body={"code": 0, "data": {"URL": "http://not-ws"}}, status=200)
        with pytest.raises(PlatformUnavailableError):
            await fetch_endpoint(http, url, state.app_id, state.app_secret)


async def test_event_is_nacked_until_it_is_queued(feishu_gw) -> None:
    """An event that cannot be queued is answered 500 (Feishu redelivers), then 200."""
    state, gateway, url = feishu_gw
    queued: list[bytes] = []
    fail = [True]

    async def on_event(payload: bytes) -> None:
        if fail[0]:
            raise RuntimeError("broker down")
        queued.append(payload)

    async with aiohttp.ClientSession() as http:
        client = FeishuWsClient(
            http=http,
            api_base=url,
            app_id=state.app_id,
            app_secret=state.app_secret,
            on_event=on_event,
        )
        task = asyncio.create_task(client.run())
        try:
            await wait_for(lambda: client.state.connected and gateway.live() == 1)
            body = event("稍后再试", "om_ws_n1")
            first = gateway.push_event(body, message_id="frame-n1")
            await wait_for(lambda: acked(gateway, first, 500))
            fail[0] = False
            gateway.push_event(body, message_id="frame-n1", parts=2)
            await wait_for(lambda: len(gateway.acks_for("frame-n1")) == 2)
            assert [a["code"] for a in gateway.acks_for("frame-n1")] == [500, 200]
            assert len(queued) == 1
            assert b"om_ws_n1" in queued[0]
            # A frame that is not protobuf is logged and skipped; the connection stays.
            gateway.push_raw(b"\xff\xff")
            gateway.push_event(event("还在", "om_ws_n2"), message_id="frame-n2")
            await wait_for(lambda: acked(gateway, "frame-n2"))
            assert gateway.accepted == 1
        finally:
            client.stop()
            await asyncio.wait_for(task, 5)
    assert not client.state.connected
