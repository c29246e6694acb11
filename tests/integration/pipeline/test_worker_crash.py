"""A worker killed while it waits for the model: the message is answered exactly once
after a worker runs again (late ack + redelivery + conversation lock + sent markers)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tests.integration.conftest import wait_for
from tests.integration.worker_process import start_worker, stop_worker, worker_env


@pytest.mark.timeout(120)
async def test_killed_worker_leads_to_exactly_one_reply(
    make_settings, make_client, fakes, wecom_app, redis_url, tmp_path
) -> None:
    settings = make_settings(**fakes.sections(wecom_app))
    client = await make_client(settings)
    env = worker_env(
        settings,
        fakes,
        wecom_app,
        redis_url,
        VLLM_TIMEOUT_S="60",
        # Short enough for a test: unacked messages come back after 2 s, locks expire in 2 s.
        BOT_BROKER_VISIBILITY_TIMEOUT_S="2",
        BOT_CONVERSATION_LOCK_TTL_S="2",
    )
    fakes.vllm.delay_s = 60  # the model is slow: the worker will be waiting on it
    first = start_worker(env, tmp_path, concurrency=4)
    try:
        query, body = wecom_app.callback("你们支持哪些支付方式", user="crash-user")
        resp = await client.post("/webhooks/wecom", params=query, data=body)
        assert resp.status == 200
        await wait_for(lambda: len(fakes.vllm.matching("/chat/completions")) >= 1, 30)
    finally:
        stop_worker(first, signal.SIGKILL)  # no warm shutdown, no ack: as if the machine died
    assert fakes.wecom.sent == []
    fakes.vllm.delay_s = 0
    second = start_worker(env, tmp_path, concurrency=4)
    try:
        await wait_for(lambda: len(fakes.wecom.sent) >= 1, 60)
        await asyncio.sleep(5)  # time for any duplicate redelivery to (not) send again
        assert len(fakes.wecom.sent) == 1
        assert fakes.wecom.sent[0]["touser"] == "crash-user"
        assert fakes.wecom.sent[0]["content"] == "ANSWER: 你们支持哪些支付方式"
    finally:
        stop_worker(second)


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
