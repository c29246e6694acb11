"""One DingTalk robot message end to end: signed POST → Redis/Celery → model → sessionWebhook.

Real HTTP with real signatures, real Redis, a real Celery worker (thread pool), real SQLite;
DingTalk, vLLM and DashScope are fake servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator

import pytest

from adapters.dingtalk import simulate as dingtalk_simulate
from bot.cli import main as cli
from bot.cli import simulate
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.integration.conftest import wait_for

AES_KEY = ("dingtalkE2eKey00" * 3)[:43]
EVENT_TOKEN = "dt-e2e-token"


@pytest.fixture
def dingtalk_api() -> Iterator[tuple[DingTalkFakeState, str]]:
    state = DingTalkFakeState(app_secret=secrets.token_urlsafe(16))
    with serve(make_dingtalk_app(state)) as url:
        yield state, url


@pytest.fixture
async def stack(make_settings, make_client, celery_worker, fakes, wecom_app, dingtalk_api):
    """Web app + in-process worker wired to the fakes; returns (client, settings)."""
    state, url = dingtalk_api
    models = fakes.sections(wecom_app)
    settings = make_settings(
        vllm=models["vllm"],
        dashscope=models["dashscope"],
        dingtalk={
            "app_key": state.app_key,
            "app_secret": state.app_secret,
            "robot_code": state.robot_code,
            "token": EVENT_TOKEN,
            "aes_key": AES_KEY,
            "api_base": url,
            # The fake sessionWebhook lives on loopback: trust that host, as prod trusts DingTalk's.
            "oapi_base": "http://127.0.0.1",
        },
    )
    client = await make_client(settings)
    celery_worker(settings)
    return client, settings


async def _post_message(client, state: DingTalkFakeState, url: str, text: str, msg_id: str):
    headers, body = dingtalk_simulate.build_robot_message(
        text,
        app_secret=state.app_secret,
        msg_id=msg_id,
        staff_id="manager4220",
        conversation_id="cidE2E==",
        session_webhook=state.session_url(url),
        timestamp_ms=int(time.time() * 1000),
        robot_code=state.robot_code,
    )
    resp = await client.post("/webhooks/dingtalk", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {}


async def test_robot_message_gets_exactly_one_reply_on_the_session(
    stack, fakes, dingtalk_api
) -> None:
    client, _ = stack
    state, url = dingtalk_api
    await _post_message(client, state, url, "怎么退货", "msgE2E-1==")
    await wait_for(lambda: len(state.sent) == 1)
    (sent,) = state.sent
    assert (sent["via"], sent["text"], sent["at"]) == ("session", "ANSWER: 怎么退货", [])
    request = fakes.vllm.matching("/chat/completions")[0].json
    assert request["messages"][-1] == {"role": "user", "content": "怎么退货"}
    # DingTalk delivers the same message again: no second reply.
    await _post_message(client, state, url, "怎么退货", "msgE2E-1==")
    await asyncio.sleep(1.5)
    assert len(state.sent) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1
    assert state.matching("/oauth2/accessToken") == []


async def test_gone_session_falls_back_to_the_openapi(stack, dingtalk_api) -> None:
    client, _ = stack
    state, url = dingtalk_api
    state.session_gone = True
    await _post_message(client, state, url, "发票怎么开", "msgE2E-2==")
    await wait_for(lambda: len(state.sent) == 1)
    await asyncio.sleep(0.5)
    (sent,) = state.sent
    assert (sent["via"], sent["userIds"], sent["text"]) == (
        "oto",
        ["manager4220"],
        "ANSWER: 发票怎么开",
    )


async def test_check_url_through_the_web_app(stack, dingtalk_api) -> None:
    client, _ = stack
    state, _ = dingtalk_api
    query, body = dingtalk_simulate.build_check_url(
        app_key=state.app_key,
        token=EVENT_TOKEN,
        aes_key=AES_KEY,
        timestamp_ms=int(time.time() * 1000),
        nonce="e2enonce",
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/dingtalk", params=query, data=body)
    assert resp.status == 200, await resp.text()
    answer = json.loads(await resp.text())
    assert set(answer) == {"msg_signature", "timeStamp", "nonce", "encrypt"}


async def test_bad_sign_is_refused_by_the_web_app(stack, dingtalk_api) -> None:
    client, _ = stack
    state, url = dingtalk_api
    headers, body = dingtalk_simulate.build_robot_message(
        "hi",
        app_secret="not-the-secret",
        msg_id="msgBad==",
        staff_id="manager4220",
        conversation_id="cidE2E==",
        session_webhook=state.session_url(url),
        timestamp_ms=int(time.time() * 1000),
    )
    resp = await client.post("/webhooks/dingtalk", data=body, headers=headers)
    assert resp.status == 401


async def test_bot_simulate_dingtalk_prints_the_reply(stack, dingtalk_api, capsys) -> None:
    client, settings = stack
    base = str(client.make_url("")).rstrip("/")
    code = await simulate.dingtalk(base, settings, "多久发货", True, "lisi", 20)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "POST /webhooks/dingtalk -> 200 '{}'" in out
    # A group message: the reply @-mentions the asker.
    assert "sessionWebhook: @lisi ANSWER: 多久发货" in out


def test_bot_simulate_dingtalk_without_config_says_so(capsys) -> None:
    code = cli.main(["simulate", "dingtalk", "hi", "--group", "--url", "http://127.0.0.1:9"])
    assert code == 2
    assert "DingTalk is not configured" in capsys.readouterr().err
