"""One Feishu message end to end: encrypted event → Redis/Celery → agent → model → reply API.

Real HTTP with real signatures and AES, real Redis, a real Celery worker (thread pool);
the Feishu API, vLLM and DashScope are fake servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.feishu import simulate as feishu_simulate
from tests.fakes.base import serve
from tests.fakes.feishu_api import FeishuFakeState, make_feishu_app
from tests.integration.conftest import wait_for

TOKEN = "feishu-verification-token"
KEY = "feishu encrypt key"
BOT = "ou_bot_e2e"


@pytest.fixture
def feishu_api() -> Iterator[tuple[FeishuFakeState, str]]:
    state = FeishuFakeState(app_id="cli_e2e", app_secret=secrets.token_urlsafe(16), bot_open_id=BOT)
    with serve(make_feishu_app(state)) as url:
        yield state, url


@pytest.fixture
def bot_open_id_setting() -> str:
    return BOT


@pytest.fixture
async def stack(
    make_settings, make_client, celery_worker, fakes, wecom_app, feishu_api, bot_open_id_setting
):
    state, url = feishu_api
    sections: dict[str, Any] = fakes.sections(wecom_app)
    sections["feishu"] = {
        "app_id": state.app_id,
        "app_secret": state.app_secret,
        "verification_token": TOKEN,
        "encrypt_key": KEY,
        "api_base": url,
        "bot_open_id": bot_open_id_setting,
    }
    settings = make_settings(**sections)
    client = await make_client(settings)
    celery_worker(settings)
    return client


def message(text: str, *, message_id: str, group: bool = False, mention: bool = False):
    now = int(time.time())
    return feishu_simulate.build_message(
        text,
        app_id="cli_e2e",
        verification_token=TOKEN,
        encrypt_key=KEY,
        user_open_id="ou_lisi",
        message_id=message_id,
        chat_id="oc_group" if group else "oc_p2p_lisi",
        event_id=secrets.token_hex(16),
        now=now,
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
        group=group,
        mention_bot=mention,
        bot_open_id=BOT,
    )


async def _post(client, headers: dict[str, str], body: bytes) -> None:
    resp = await client.post("/webhooks/feishu", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    assert json.loads(await resp.text()) == {}


async def test_url_verification_through_the_web_app(stack) -> None:
    headers, body = feishu_simulate.build_verification(
        "challenge-e2e",
        verification_token=TOKEN,
        encrypt_key=KEY,
        timestamp="",
        nonce="",
        iv=os.urandom(16),
    )
    resp = await stack.post("/webhooks/feishu", data=body, headers=headers)
    assert resp.status == 200
    assert await resp.json() == {"challenge": "challenge-e2e"}


async def test_p2p_message_gets_exactly_one_reply(stack, fakes, feishu_api) -> None:
    state, _ = feishu_api
    headers, body = message("怎么退货", message_id="om_e2e_1")
    await _post(stack, headers, body)
    await wait_for(lambda: len(state.sent) == 1)
    sent = state.sent[0]
    assert (sent["reply_to"], sent["text"], sent["msg_type"]) == (
        "om_e2e_1",
        "ANSWER: 怎么退货",
        "text",
    )
    assert sent["uuid"]
    request = fakes.vllm.matching("/chat/completions")[0].json
    assert request["messages"][-1] == {"role": "user", "content": "怎么退货"}
    # Feishu re-pushes the same POST: no second reply.
    await _post(stack, headers, body)
    # And a re-push with a new event_id for the same message is still the same message.
    headers2, body2 = message("怎么退货", message_id="om_e2e_1")
    await _post(stack, headers2, body2)
    await asyncio.sleep(1.5)
    assert len(state.sent) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_group_message_for_the_bot_is_answered_and_others_are_not(
    stack, fakes, feishu_api
) -> None:
    state, _ = feishu_api
    await _post(stack, *message("大家好", message_id="om_e2e_g1", group=True))
    await _post(stack, *message("发票怎么开", message_id="om_e2e_g2", group=True, mention=True))
    await wait_for(lambda: len(state.sent) == 1)
    await asyncio.sleep(1.0)
    assert [(m["reply_to"], m["text"], m["mentions"]) for m in state.sent] == [
        ("om_e2e_g2", "ANSWER: 发票怎么开", ["ou_lisi"])
    ]


@pytest.mark.parametrize("bot_open_id_setting", [""])
async def test_without_a_configured_open_id_the_bot_asks_bot_info_once(
    stack, feishu_api, bot_open_id_setting
) -> None:
    state, _ = feishu_api
    await _post(stack, *message("大家好", message_id="om_e2e_i1", group=True))
    await _post(stack, *message("在吗", message_id="om_e2e_i2", group=True, mention=True))
    await _post(stack, *message("还在吗", message_id="om_e2e_i3", group=True, mention=True))
    await wait_for(lambda: len(state.sent) == 2)
    await asyncio.sleep(0.5)
    assert [(m["reply_to"], m["mentions"]) for m in state.sent] == [
        ("om_e2e_i2", ["ou_lisi"]),
        ("om_e2e_i3", ["ou_lisi"]),
    ]
    assert len(state.matching("/open-apis/bot/v3/info")) == 1


@pytest.mark.parametrize("bot_open_id_setting", [""])
async def test_a_failed_bot_info_defers_mentions_with_503_not_silence(
    stack, feishu_api, bot_open_id_setting
) -> None:
    state, _ = feishu_api
    state.bot_info_fail = True
    headers, body = message("在吗", message_id="om_e2e_f1", group=True, mention=True)
    resp = await stack.post("/webhooks/feishu", data=body, headers=headers)
    assert resp.status == 503  # Feishu delivers it again (15 s, 5 min, 1 h, 6 h)
    # Messages that need no open_id still flow meanwhile.
    await _post(stack, *message("私聊问题", message_id="om_e2e_f2"))
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["reply_to"] == "om_e2e_f2"


async def test_bot_simulate_feishu_is_answered(stack, feishu_api) -> None:
    from tests.integration.deploy.test_cli import _env, _run_cli

    state, url = feishu_api
    env = _env(
        FEISHU_APP_ID=state.app_id,
        FEISHU_APP_SECRET=state.app_secret,
        FEISHU_VERIFICATION_TOKEN=TOKEN,
        FEISHU_ENCRYPT_KEY=KEY,
        FEISHU_API_BASE=url,
        FEISHU_BOT_OPEN_ID=BOT,
    )
    base = str(stack.make_url("")).rstrip("/")
    args = ("simulate", "feishu", "多久发货", "--group", "--mention", "--url", base)
    code, out = await _run_cli(env, *args)
    assert code == 0, out
    assert "POST /webhooks/feishu -> 200" in out
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["text"] == "ANSWER: 多久发货"
    # Without --mention a group message is not for the bot: accepted, never answered.
    code, out = await _run_cli(env, "simulate", "feishu", "大家好", "--group", "--url", base)
    assert code == 0, out
    await asyncio.sleep(1.0)
    assert len(state.sent) == 1
