"""A worker killed while it waits for the model: the message is answered exactly once
after a worker runs again (late ack + redelivery + conversation lock + sent markers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from tests.integration.conftest import REPO, SAMPLE_KB, wait_for


def _start_worker(env: dict[str, str], cwd) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "worker", "--concurrency", "4"],
        env=env,
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.mark.timeout(120)
async def test_killed_worker_leads_to_exactly_one_reply(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "VLLM_", "BOT_"))},
        **fakes.env(wecom_app),
        "REDIS_URL": redis_url,
        "BOT_DATA_DIR": str(settings.core.data_dir),
        "BOT_KNOWLEDGE_DIR": str(SAMPLE_KB),
        "BOT_FAQ_DIRECT_SCORE": "1.01",  # the question is an FAQ's: keep the model path
        "VLLM_TIMEOUT_S": "60",
        # Short enough for a test: unacked messages come back after 2 s, locks expire in 2 s.
        "BOT_BROKER_VISIBILITY_TIMEOUT_S": "2",
        "BOT_CONVERSATION_LOCK_TTL_S": "2",
        "PYTHONPATH": str(REPO),
    }
    fakes.vllm.delay_s = 60  # the model is slow: the worker will be waiting on it
    first = _start_worker(env, tmp_path)
    try:
        query, body = wecom_app.callback("你们支持哪些支付方式", user="crash-user")
        resp = await client.post("/webhooks/wecom", params=query, data=body)
        assert resp.status == 200
        await wait_for(lambda: len(fakes.vllm.matching("/chat/completions")) >= 1, 30)
    finally:
        _stop(first, signal.SIGKILL)  # no warm shutdown, no ack: as if the machine died
    assert fakes.wecom.sent == []
    fakes.vllm.delay_s = 0
    second = _start_worker(env, tmp_path)
    try:
        await wait_for(lambda: len(fakes.wecom.sent) >= 1, 60)
        await asyncio.sleep(5)  # time for any duplicate redelivery to (not) send again
        assert len(fakes.wecom.sent) == 1
        assert fakes.wecom.sent[0]["touser"] == "crash-user"
        assert fakes.wecom.sent[0]["content"] == "ANSWER: 你们支持哪些支付方式"
    finally:
        _stop(second)


async def test_a_part_sent_before_a_crash_is_not_delivered_twice(
    make_settings, make_client, celery_worker, fakes, wecom_app, sync_redis
) -> None:
    """A worker sent the answer, then died before its sent-marker. The redelivered turn
    resends with WeCom's duplicate check, and WeCom drops it: the customer reads it once.
    A customer who then asks the same thing again gets the same answer again."""
    settings = make_settings(**fakes.sections(wecom_app), core={"rate_per_minute": 0})
    client = await make_client(settings)
    answer = "ANSWER: 你们支持哪些支付方式"
    # What the dead worker did: its attempt marker, and the message WeCom delivered.
    sync_redis.set("sending:wecom:default:crash-msg-1:0", "1")
    token = await _wecom_token(fakes)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{fakes.wecom_url}/cgi-bin/message/send",
            params={"access_token": token},
            json={
                "touser": "crash-2",
                "msgtype": "text",
                "agentid": int(wecom_app.agent_id),
                "text": {"content": answer},
                "safe": 0,
            },
        )
        assert (await resp.json(content_type=None))["errcode"] == 0
    celery_worker(settings)
    query, body = wecom_app.callback("你们支持哪些支付方式", user="crash-2", msg_id="crash-msg-1")
    assert (await client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await wait_for(lambda: fakes.wecom.suppressed == 1)
    assert [m["content"] for m in fakes.wecom.sent] == [answer]
    query, body = wecom_app.callback("你们支持哪些支付方式", user="crash-2")
    await client.post("/webhooks/wecom", params=query, data=body)
    await wait_for(lambda: len(fakes.wecom.sent) == 2)
    assert [m["content"] for m in fakes.wecom.sent] == [answer, answer]


async def _wecom_token(fakes) -> str:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            f"{fakes.wecom_url}/cgi-bin/gettoken",
            params={"corpid": fakes.wecom.corp_id, "corpsecret": fakes.wecom.secret},
        )
        return (await resp.json())["access_token"]
