"""WeCom 智能机器人 end to end: signed, encrypted JSON callbacks → web app → Redis/Celery →
agent → a streaming model → stream state in Redis → refresh callbacks.

Real HTTP with real signatures and AES (empty receive id), real Redis, a real Celery worker;
vLLM, DashScope and the response_url endpoint are fakes on loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import string
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from sqlmodel import Session, select

from adapters.wecom_aibot import simulate
from bot import keys
from bot.db.engine import get_engine
from bot.db.models import TurnRecord
from tests.fakes.base import serve
from tests.fakes.wecom_aibot_api import AiBotFakeState, make_aibot_app
from tests.integration.conftest import wait_for

TOKEN = "aibot-e2e-token"
KEY = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


@pytest.fixture
def aibot_api() -> Iterator[AiBotFakeState]:
    state = AiBotFakeState()
    with serve(make_aibot_app(state)) as url:
        state.base_url = url
        yield state


@pytest.fixture
async def web_only(make_settings, make_client, fakes, wecom_app):
    """The web app alone: for what it answers without a worker."""
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["wecom_aibot"] = {"token": TOKEN, "aes_key": KEY, "welcome_text": "您好，有问题请问我"}
    settings = make_settings(**sections)
    return await make_client(settings), settings


@pytest.fixture
async def stack(web_only, celery_worker):
    celery_worker(web_only[1])
    return web_only


def stamp() -> dict[str, Any]:
    return {
        "timestamp": str(int(time.time())),
        "nonce": secrets.token_hex(6),
        "random_prefix": os.urandom(16),
    }


async def post(client, data: dict[str, Any]) -> dict[str, Any] | None:
    query, body = simulate.build_post(data, token=TOKEN, aes_key=KEY, **stamp())
    resp = await client.post("/webhooks/wecom_aibot", params=query, data=body)
    assert resp.status == 200, await resp.text()
    raw = await resp.read()
    return simulate.open_reply(raw, token=TOKEN, aes_key=KEY) if raw else None


async def test_url_verification_is_answered_fast(web_only) -> None:
    client, _ = web_only
    query = simulate.build_verification("echo-aibot-1", token=TOKEN, aes_key=KEY, **stamp())
    started = time.perf_counter()
    resp = await client.get("/webhooks/wecom_aibot", params=query)
    assert resp.status == 200
    assert await resp.text() == "echo-aibot-1"
    assert time.perf_counter() - started < 1.0  # WeCom's limit for the URL check


async def test_text_streams_through_refreshes_and_finishes_once(
    stack, make_client, fakes, aibot_api: AiBotFakeState
) -> None:
    client, settings = stack
    # A second web replica: refreshes alternate between the two, as behind a load balancer.
    replicas = [client, await make_client(settings)]
    # A model that writes at a readable pace: 2 characters every 0.2 s.
    fakes.vllm.chunk_chars = 2
    fakes.vllm.chunk_delay_s = 0.2
    message = simulate.text_message("怎么退货", msgid="aibot-e2e-1", response_url=aibot_api.issue())
    first = await post(client, message)
    assert first is not None
    stream = first["stream"]
    assert (stream["finish"], stream["content"], stream["feedback"]) == (
        False,
        "",
        {"id": "aibot-e2e-1"},
    )
    sid = stream["id"]

    seen: list[str] = []
    finished: dict[str, Any] | None = None
    deadline = time.monotonic() + 20
    while finished is None and time.monotonic() < deadline:
        replica = replicas[len(seen) % 2]
        answer = await post(replica, simulate.refresh(sid, msgid=secrets.token_hex(8)))
        assert answer is not None
        assert answer["msgtype"] == "stream"
        assert answer["stream"]["id"] == sid
        if answer["stream"]["finish"]:
            finished = answer["stream"]
        else:
            seen.append(answer["stream"]["content"])
        await asyncio.sleep(0.1)
    assert finished is not None, f"no finish within 20 s; saw {seen[-3:]}"
    final = finished["content"]
    assert final.startswith("ANSWER: 怎么退货")
    # The text grew: every refresh showed a prefix of the one after, some of them partial.
    partial = [s for s in seen if s]
    assert partial, "no refresh showed the answer being written"
    assert any(0 < len(s) < len("ANSWER: 怎么退货") for s in partial)
    assert all(b.startswith(a) for a, b in zip(seen, [*seen[1:], final], strict=True))

    # Exactly one answer: a later refresh repeats the final text, a redelivery of the
    # message asks the model nothing more, and response_url was never needed.
    again = await post(replicas[1], simulate.refresh(sid, msgid=secrets.token_hex(8)))
    assert again is not None
    assert again["stream"] == {"id": sid, "finish": True, "content": final}
    redelivered = await post(client, message)
    assert redelivered is not None
    assert redelivered["stream"]["id"] == sid
    await asyncio.sleep(1.0)
    assert len(fakes.vllm.matching("/chat/completions")) == 1
    assert aibot_api.requests == []

    # 👎 on the answer is stored with its turn.
    feedback = simulate.event(
        "feedback_event",
        {"id": "aibot-e2e-1", "type": 2, "content": "不完整", "inaccurate_reason_list": [2]},
        msgid="aibot-e2e-fb-1",
        create_time=int(time.time()),
    )
    assert await post(client, feedback) is None
    engine = get_engine(settings.core.effective_database_url())

    def rating() -> int | None:
        with Session(engine) as session:
            return session.exec(select(TurnRecord.rating)).first()

    await wait_for(lambda: rating() == -1)


async def test_group_mention_is_answered_in_the_group_conversation(stack, fakes) -> None:
    client, _ = stack
    message = simulate.text_message(
        "@客服助手 发票怎么开", msgid="aibot-e2e-g1", chatid="wrgroup1", user="lisi"
    )
    first = await post(client, message)
    assert first is not None
    sid = first["stream"]["id"]

    async def final() -> str | None:
        answer = await post(
            client, simulate.refresh(sid, msgid=secrets.token_hex(8), chatid="wrgroup1")
        )
        assert answer is not None
        return answer["stream"]["content"] if answer["stream"]["finish"] else None

    deadline = time.monotonic() + 20
    text = None
    while text is None and time.monotonic() < deadline:
        text = await final()
        await asyncio.sleep(0.1)
    assert text is not None
    assert text.startswith("ANSWER: 发票怎么开")
    request = fakes.vllm.matching("/chat/completions")[0].json
    assert request["messages"][-1]["content"] == "发票怎么开"


async def test_enter_chat_gets_the_welcome_and_queues_nothing(web_only, sync_redis) -> None:
    client, _ = web_only
    event = simulate.event("enter_chat", {}, msgid="aibot-e2e-enter", create_time=int(time.time()))
    assert await post(client, event) == {
        "msgtype": "text",
        "text": {"content": "您好，有问题请问我"},
    }
    assert sync_redis.llen(keys.QUEUE) == 0
    # A message is queued, for comparison: the check above could fail.
    await post(client, simulate.text_message("你好", msgid="aibot-e2e-q"))
    assert sync_redis.llen(keys.QUEUE) == 1


async def test_hostile_requests_get_4xx_and_one_log_line(web_only, caplog) -> None:
    client, _ = web_only
    query, body = simulate.build_post(
        simulate.text_message("hi", msgid="h1"), token=TOKEN, aes_key=KEY, **stamp()
    )
    bad_signature = {**query, "msg_signature": "0" * 40}
    bad_base64 = json.dumps({"encrypt": "%%%"}).encode()
    cases = [
        ("bad signature", bad_signature, body, 401),
        ("bad base64", query, bad_base64, 401),  # the signature covers encrypt: refused first
        ("wrong JSON", query, b"[1,2,3]", 400),
        ("not JSON", query, b"\xff\xfe{", 400),
        ("huge body", query, io.BytesIO(b"{" + b" " * (2 << 20) + b"}"), 413),
    ]
    for name, q, b, status in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bot.web.webhooks"):
            resp = await client.post("/webhooks/wecom_aibot", params=q, data=b)
        assert resp.status == status, name
        lines = [r for r in caplog.records if r.name == "bot.web.webhooks"]
        assert len(lines) == 1, (name, [r.getMessage() for r in lines])
        assert TOKEN not in lines[0].getMessage()


async def test_bot_simulate_prints_the_answer_as_it_grows(stack, fakes, capsys) -> None:
    from bot.cli import simulate as cli_simulate

    client, settings = stack
    fakes.vllm.chunk_chars = 3
    fakes.vllm.chunk_delay_s = 0.3
    base = str(client.make_url("")).rstrip("/")
    status = await cli_simulate.wecom_aibot(base, settings, "wangwu", "发票怎么开", 20, group=True)
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("stream ")
    assert "ANSWER: 发票怎么开" in out
    assert lines[-1] == "[finish]"


async def _final(client, sid: str, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = await post(client, simulate.refresh(sid, msgid=secrets.token_hex(8)))
        assert answer is not None
        if answer["stream"]["finish"]:
            return str(answer["stream"]["content"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"stream {sid} not finished within {timeout_s}s")


async def test_a_follow_up_joined_into_a_burst_closes_its_own_stream(
    make_settings, make_client, celery_worker, fakes, wecom_app
) -> None:
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["wecom_aibot"] = {"token": TOKEN, "aes_key": KEY}
    sections["core"] = {"burst_window_s": 1.0}
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    first = await post(client, simulate.text_message("我想退货", msgid="aibot-burst-1"))
    second = await post(client, simulate.text_message("订单 A123", msgid="aibot-burst-2"))
    assert first is not None
    assert second is not None
    answered = await _final(client, first["stream"]["id"])
    joined = await _final(client, second["stream"]["id"])
    # One answer to both, on the first message's stream; the second closes empty, not left
    # "being written" until WeCom's 6 minutes run out.
    assert answered.startswith("ANSWER: ")
    assert "订单 A123" in answered
    assert joined == ""
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_many_refreshes_at_once_are_all_answered(web_only) -> None:
    # 300 streams refreshing at the same moment: more requests in flight than redis-py's
    # default pool holds (100), which answered 503 beyond it.
    client, _ = web_only
    url = str(client.make_url("/webhooks/wecom_aibot"))
    bodies = [
        simulate.build_post(
            simulate.refresh(f"sid-{i}", msgid=f"many-{i}"), token=TOKEN, aes_key=KEY, **stamp()
        )
        for i in range(300)
    ]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(query: dict[str, str], body: bytes) -> int:
            async with http.post(url, params=query, data=body) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(one(q, b) for q, b in bodies))
    assert sorted(set(statuses)) == [200]
