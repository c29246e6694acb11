"""WeCom 智能机器人 long connection end to end: fake gateway → `bot stream wecom_aibot`'s holder
→ intake → a real Celery worker → a streaming model → outbox in Redis → aibot_respond_msg on
the socket, with the callback's req_id. Two replicas: one connection; two `bot stream`
processes: one connection, and the second takes over when the first is killed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.stream import runner as stream
from tests.fakes import wecom_aibot_ws
from tests.fakes.wecom_aibot_ws import AiBotGateway
from tests.integration.adapters.streams import Streams
from tests.integration.conftest import REPO, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[AiBotGateway, str]]:
    async with wecom_aibot_ws.serving() as found:
        yield found


def section(fake: AiBotGateway, url: str) -> dict[str, Any]:
    return {"mode": "longconn", "bot_id": fake.bot_id, "secret": fake.secret, "ws_url": url}


@pytest.fixture
def stream_settings(make_settings, celery_worker, fakes, wecom_app, gateway):
    fake, url = gateway
    sections: dict[str, Any] = fakes.sections(wecom_app)
    settings = make_settings(**sections, wecom_aibot=section(fake, url))
    celery_worker(settings)
    return settings


@pytest.fixture
async def streams():
    def run(settings: Any, stop: asyncio.Event) -> Any:
        return stream.run_wecom_aibot(
            settings, stop, lease_ttl_s=1.5, backoff_base_s=0.1, status_every_s=0.2
        )

    s = Streams(run)
    yield s
    await s.stop_all()


def text_body(msgid: str, content: str) -> dict[str, Any]:
    return {
        "msgid": msgid,
        "aibotid": "aibot-fake",
        "chatid": "grp-lc",
        "chattype": "group",
        "from": {"userid": "lisi"},
        "msgtype": "text",
        "text": {"content": f"@客服 {content}"},
    }


async def test_message_in_streamed_answer_out_with_its_req_id(
    stream_settings, streams, gateway
) -> None:
    fake, _ = gateway
    streams.start(stream_settings)
    await wait_for(lambda: fake.subscribes == 1 and bool(fake.sockets))
    req_id = await fake.callback(text_body("lc-m1", "退货要几天"))
    await wait_for(lambda: any(r["body"]["stream"]["finish"] for r in fake.responses), timeout_s=30)
    assert {r["headers"]["req_id"] for r in fake.responses} == {req_id}
    finals = [r for r in fake.responses if r["body"]["stream"]["finish"]]
    assert len(finals) == 1
    # The first words went out before the answer was done (nothing polls on this socket).
    assert not fake.responses[0]["body"]["stream"]["finish"]
    # …and named the msgid as the feedback id a 👍/👎 on this answer carries back.
    assert fake.responses[0]["body"]["stream"]["feedback"] == {"id": "lc-m1"}
    assert "退货要几天" in finals[0]["body"]["stream"]["content"]
    # Every frame names the same stream; the text only grows.
    assert len({r["body"]["stream"]["id"] for r in fake.responses}) == 1
    texts = [r["body"]["stream"]["content"] for r in fake.responses]
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    # The same msgid again (a redelivery) is not answered twice.
    await fake.callback(text_body("lc-m1", "退货要几天"))
    await asyncio.sleep(1.0)
    assert len([r for r in fake.responses if r["body"]["stream"]["finish"]]) == 1


async def test_two_replicas_one_connection_and_failover(stream_settings, streams, gateway) -> None:
    fake, _ = gateway
    stop_a, task_a = streams.start(stream_settings)
    await wait_for(lambda: fake.subscribes == 1)
    streams.start(stream_settings)
    await asyncio.sleep(2.0)  # longer than the lease TTL: B keeps polling, never connects
    assert (fake.subscribes, len(fake.sockets)) == (1, 1)
    stop_a.set()
    # asyncio.wait, not wait_for: on a loaded machine the replica may take longer than a
    # first guess to close its socket, and 3.11's wait_for then waits on its cancel.
    done, _ = await asyncio.wait({task_a}, timeout=20)
    assert task_a in done, "replica A did not stop within 20 s of its stop event"
    await wait_for(lambda: fake.subscribes == 2 and len(fake.sockets) == 1, timeout_s=5)
    req_id = await fake.callback(text_body("lc-m2", "换人了吗"))
    await wait_for(
        lambda: any(
            r["headers"]["req_id"] == req_id and r["body"]["stream"]["finish"]
            for r in fake.responses
        ),
        timeout_s=30,
    )


@pytest.mark.timeout(60)
async def test_two_bot_stream_processes_hold_one_connection(redis_url, tmp_path, gateway) -> None:
    fake, url = gateway
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_AIBOT_", "REDIS_"))}
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(tmp_path / "data"),
        "WECOM_AIBOT_MODE": "longconn",
        "WECOM_AIBOT_BOT_ID": fake.bot_id,
        "WECOM_AIBOT_SECRET": fake.secret,
        "WECOM_AIBOT_WS_URL": url,
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "stream", "wecom_aibot"],
            env=env,
            cwd=tmp_path,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [start()]
    try:
        await wait_for(lambda: len(fake.sockets) == 1, timeout_s=20)
        procs.append(start())
        await asyncio.sleep(3)  # B is up and polling the lease
        assert (fake.subscribes, len(fake.sockets)) == (1, 1)
        killed_at = time.monotonic()
        os.kill(procs[0].pid, signal.SIGKILL)  # no release: B waits out the lease
        await wait_for(lambda: fake.subscribes == 2 and len(fake.sockets) == 1, timeout_s=20)
        assert time.monotonic() - killed_at < 15
        procs[1].send_signal(signal.SIGTERM)
        await wait_for(lambda: procs[1].poll() is not None, timeout_s=10)
        assert procs[1].returncode == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
