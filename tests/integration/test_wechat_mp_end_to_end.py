"""Official Account end to end: webhook (plaintext / safe mode) → Celery → model → custom/send.

Real HTTP with real signatures and AES, real Redis, a real Celery worker (thread pool), real
SQLite; the MP API and the models are fake servers on loopback. Every accepted POST is
answered ``success`` at once and the answer goes out through message/custom/send.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, select

from adapters import wechat_mp_simulate
from bot import db
from bot.agent import VOICE_UNSUPPORTED_TEXT, WELCOME_TEXT
from bot.models import Delivery
from tests.fakes.base import serve
from tests.fakes.wechat_mp_api import WeChatMPFakeState, make_wechat_mp_app
from tests.integration.conftest import wait_for

SEND = "/cgi-bin/message/custom/send"
GH = "gh_e2e_account"


@pytest.fixture
def mp_api() -> Iterator[tuple[WeChatMPFakeState, str]]:
    state = WeChatMPFakeState(app_id="wx" + secrets.token_hex(8), secret=secrets.token_hex(16))
    with serve(make_wechat_mp_app(state)) as url:
        yield state, url


def _aes_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(43))


async def _stack(make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, aes_key):
    state, url = mp_api
    mp: dict[str, Any] = {
        "app_id": state.app_id,
        "app_secret": state.secret,
        "token": "mp-e2e-token",
        "aes_key": aes_key,
        "WECHAT_API_BASE": url,
    }
    settings = make_settings(**fakes.sections(wecom_app), wechat_mp=mp)
    assert settings.wechat_mp.api_base == url
    client = await make_client(settings)
    celery_worker(settings)
    return client, settings


def _message(text: str, openid: str, msg_id: str) -> bytes:
    return wechat_mp_simulate.text_xml(
        text, from_user=openid, to_user=GH, msg_id=msg_id, create_time=int(time.time())
    )


async def _post(client, query: dict[str, str], body: bytes) -> None:
    resp = await client.post("/webhooks/wechat_mp", params=query, data=body)
    assert resp.status == 200, await resp.text()
    assert await resp.text() == "success"


@pytest.fixture
async def safe_stack(make_settings, make_client, celery_worker, fakes, wecom_app, mp_api):
    key = _aes_key()
    client, settings = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, key
    )
    return client, settings, key


@pytest.fixture
async def plain_stack(make_settings, make_client, celery_worker, fakes, wecom_app, mp_api):
    return await _stack(make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, "")


def _safe(settings, key: str, text: str, openid: str, msg_id: str) -> tuple[dict, bytes]:
    return wechat_mp_simulate.safe_post(
        _message(text, openid, msg_id),
        token="mp-e2e-token",
        aes_key=key,
        app_id=settings.wechat_mp.app_id,
        timestamp=str(int(time.time())),
        nonce=str(secrets.randbelow(10**9)),
        openid=openid,
        to_user=GH,
        random_prefix=os.urandom(16),
    )


def _plain(text: str, openid: str, msg_id: str) -> tuple[dict, bytes]:
    return wechat_mp_simulate.plain_post(
        _message(text, openid, msg_id),
        token="mp-e2e-token",
        timestamp=str(int(time.time())),
        nonce=str(secrets.randbelow(10**9)),
        openid=openid,
    )


async def test_safe_mode_message_is_answered_once_through_custom_send(
    safe_stack, mp_api, fakes
) -> None:
    client, settings, key = safe_stack
    state, _ = mp_api
    await _post(client, *_safe(settings, key, "怎么退货", "oSafeUser", "70001"))
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["touser"], state.sent[0]["content"]) == ("oSafeUser", "ANSWER: 怎么退货")
    # WeChat re-sends the same MsgId (its 5 s retry): no second turn, no second send.
    await _post(client, *_safe(settings, key, "怎么退货", "oSafeUser", "70001"))
    await asyncio.sleep(1.5)
    assert len(state.matching(SEND)) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_plaintext_mode_message_is_answered_once(plain_stack, mp_api, fakes) -> None:
    client, _ = plain_stack
    state, _ = mp_api
    await _post(client, *_plain("发票怎么开", "oPlainUser", "70002"))
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["touser"], state.sent[0]["content"]) == (
        "oPlainUser",
        "ANSWER: 发票怎么开",
    )
    await _post(client, *_plain("发票怎么开", "oPlainUser", "70002"))
    await asyncio.sleep(1.5)
    assert len(state.matching(SEND)) == 1


async def test_forged_signature_is_refused_and_nothing_is_sent(plain_stack, mp_api) -> None:
    client, _ = plain_stack
    state, _ = mp_api
    query, body = _plain("hi", "oX", "70003")
    query["signature"] = "0" * 40
    resp = await client.post("/webhooks/wechat_mp", params=query, data=body)
    assert resp.status == 401
    await asyncio.sleep(0.5)
    assert state.matching(SEND) == []


async def test_out_of_window_45015_is_recorded_not_retried(plain_stack, mp_api) -> None:
    client, settings = plain_stack
    state, _ = mp_api
    state.reject_sends(45015)
    await _post(client, *_plain("还在吗", "oGoneUser", "70004"))
    await wait_for(lambda: len(state.matching(SEND)) == 1)
    await asyncio.sleep(2)
    assert len(state.matching(SEND)) == 1
    assert state.sent == []
    engine = db.get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        delivery = s.exec(select(Delivery)).one()
    assert delivery.status == "failed"
    assert "45015" in delivery.error


async def test_voice_without_recognition_says_the_bot_cannot_listen(
    plain_stack, mp_api, fakes
) -> None:
    client, _ = plain_stack
    state, _ = mp_api
    body = wechat_mp_simulate.message_xml(
        "voice",
        from_user="oVoiceUser",
        to_user=GH,
        create_time=int(time.time()),
        MediaId="media-1",
        Format="amr",
        MsgId="70005",
    )
    query, body = wechat_mp_simulate.plain_post(
        body, token="mp-e2e-token", timestamp=str(int(time.time())), nonce="1", openid="oVoiceUser"
    )
    await _post(client, query, body)
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["content"] == VOICE_UNSUPPORTED_TEXT
    assert fakes.vllm.matching("/chat/completions") == []


async def test_subscribe_is_welcomed_without_the_model(plain_stack, mp_api, fakes) -> None:
    client, _ = plain_stack
    state, _ = mp_api
    body = wechat_mp_simulate.message_xml(
        "event",
        from_user="oNewFan",
        to_user=GH,
        create_time=int(time.time()),
        Event="subscribe",
        EventKey="qrscene_poster",
    )
    query, body = wechat_mp_simulate.plain_post(
        body, token="mp-e2e-token", timestamp=str(int(time.time())), nonce="2", openid="oNewFan"
    )
    await _post(client, query, body)
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["touser"], state.sent[0]["content"]) == ("oNewFan", WELCOME_TEXT)
    assert fakes.vllm.matching("/chat/completions") == []


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_bot_simulate_wechat_mp_reaches_the_model(
    mode: str, make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, capsys
) -> None:
    from bot import simulate

    key = _aes_key() if mode == "safe" else ""
    client, settings = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, key
    )
    state, _ = mp_api
    base = str(client.make_url("")).rstrip("/")
    assert await simulate.wechat_mp(base, settings, "simuser", "运费多少", 5) == 0
    assert "'success'" in capsys.readouterr().out
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["touser"], state.sent[0]["content"]) == ("osimuser", "ANSWER: 运费多少")
