"""Official Account end to end: webhook (plaintext / safe mode) → Celery → model → reply.

Real HTTP with real signatures and AES, real Redis, a real Celery worker (thread pool), real
SQLite; the MP API and the models are fake servers on loopback. With passive replies off
(BOT_MP_PASSIVE_WAIT_S=0) every accepted POST is answered ``success`` at once and the answer
goes out through message/custom/send; the `test_passive_*` tests turn them on.
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

from adapters.wechat import crypto as wechat_crypto
from adapters.wechat_mp import simulate as wechat_mp_simulate
from adapters.xml import parse_xml
from bot.agent.agent import WELCOME_TEXT
from bot.db.engine import get_engine
from bot.db.models import Delivery
from bot.pipeline.autoreply import VOICE_REPLY
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


async def _stack(
    make_settings,
    make_client,
    celery_worker,
    fakes,
    wecom_app,
    mp_api,
    aes_key,
    wait_s=0.0,
    core: dict[str, Any] | None = None,
    **mp_extra: Any,
):
    state, url = mp_api
    mp: dict[str, Any] = {
        "app_id": state.app_id,
        "app_secret": state.secret,
        "token": "mp-e2e-token",
        "aes_key": aes_key,
        "WECHAT_API_BASE": url,
        **mp_extra,
    }
    sections = fakes.sections(wecom_app)
    sections["vllm"]["timeout_s"] = 15  # slow-model tests must not fall back to DashScope
    settings = make_settings(
        **sections, wechat_mp=mp, core={"mp_passive_wait_s": wait_s, **(core or {})}
    )
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
    engine = get_engine(settings.core.effective_database_url())
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
    assert state.sent[0]["content"] == VOICE_REPLY
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
    from bot.cli import simulate

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


# --- passive replies (bot/pipeline/passive.py) ----------------------------------------------------


def _passive_content(resp_body: bytes, *, openid: str) -> str:
    fields = parse_xml(resp_body)
    assert (fields["ToUserName"], fields["FromUserName"], fields["MsgType"]) == (
        openid,
        GH,
        "text",
    )
    return fields["Content"]


def _open_safe_reply(resp_body: bytes, settings, key: str, query: dict[str, str]) -> bytes:
    envelope = parse_xml(resp_body)
    # Signed as WeChat checks it: msg_signature over token, timestamp, nonce, Encrypt.
    assert envelope["MsgSignature"] == wechat_crypto.signature(
        "mp-e2e-token", envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
    )
    assert (envelope["TimeStamp"], envelope["Nonce"]) == (query["timestamp"], query["nonce"])
    return wechat_crypto.decrypt(
        envelope["Encrypt"],
        aes_key=wechat_crypto.decode_aes_key(key),
        receiver_id=settings.wechat_mp.app_id,
    )


async def _post_raw(client, query: dict[str, str], body: bytes) -> bytes:
    resp = await client.post("/webhooks/wechat_mp", params=query, data=body)
    assert resp.status == 200, await resp.text()
    return await resp.read()


@pytest.fixture
async def passive_safe(make_settings, make_client, celery_worker, fakes, wecom_app, mp_api):
    key = _aes_key()
    client, settings = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, key, 4.5
    )
    return client, settings, key


async def test_passive_fast_answer_is_the_first_requests_reply_safe_mode(
    passive_safe, mp_api, fakes
) -> None:
    client, settings, key = passive_safe
    state, _ = mp_api
    query, body = _safe(settings, key, "怎么退货", "oFastUser", "71001")
    started = time.monotonic()
    answer = await _post_raw(client, query, body)
    assert time.monotonic() - started < 4.5
    plain = _open_safe_reply(answer, settings, key, query)
    assert _passive_content(plain, openid="oFastUser") == "ANSWER: 怎么退货"
    await asyncio.sleep(1.0)
    assert state.matching(SEND) == []
    assert len(fakes.vllm.matching("/chat/completions")) == 1
    engine = get_engine(settings.core.effective_database_url())
    with Session(engine) as s:
        delivery = s.exec(select(Delivery)).one()
    assert (delivery.status, delivery.platform_msg_id) == ("sent", "passive")


async def test_passive_slow_answer_goes_to_the_retry_with_one_turn(
    passive_safe, mp_api, fakes
) -> None:
    client, settings, key = passive_safe
    state, _ = mp_api
    fakes.vllm.delay_s = 6
    query, body = _safe(settings, key, "慢一点的问题", "oSlowUser", "71002")
    # WeChat hangs up at 5 s and re-sends the same POST while the first is still open.
    first = asyncio.create_task(_post_raw(client, query, body))
    await asyncio.sleep(5.0)
    second = asyncio.create_task(_post_raw(client, query, body))
    retry_answer = await second
    plain = _open_safe_reply(retry_answer, settings, key, query)
    assert _passive_content(plain, openid="oSlowUser") == "ANSWER: 慢一点的问题"
    assert await first == b"success"  # read by nobody: WeChat had hung up
    await asyncio.sleep(1.0)
    assert state.matching(SEND) == []
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_passive_too_slow_answer_goes_through_custom_send_once(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_api
) -> None:
    client, _ = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, "", 1.0
    )
    state, _ = mp_api
    fakes.vllm.delay_s = 6
    query, body = _plain("很慢的问题", "oVerySlow", "71003")
    answers = []
    started = time.monotonic()
    for _try in range(3):  # WeChat's three tries of one MsgId
        answers.append(await _post_raw(client, query, body))
    # Tries 1 and 2 are held past the wait (WeChat would hang up); the last answers at once.
    assert answers == [b"success"] * 3
    assert time.monotonic() - started < 6
    assert state.matching(SEND) == []
    await wait_for(lambda: len(state.sent) == 1)
    assert (state.sent[0]["touser"], state.sent[0]["content"]) == (
        "oVerySlow",
        "ANSWER: 很慢的问题",
    )
    # A late retry finds the answer claimed by custom/send and answers success at once.
    assert await _post_raw(client, query, body) == b"success"
    await asyncio.sleep(1.0)
    assert len(state.matching(SEND)) == 1
    assert len(fakes.vllm.matching("/chat/completions")) == 1


async def test_passive_reply_in_plaintext_mode(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_api
) -> None:
    client, _ = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, "", 4.5
    )
    state, _ = mp_api
    answer = await _post_raw(client, *_plain("发票怎么开", "oPlainFast", "71004"))
    assert _passive_content(answer, openid="oPlainFast") == "ANSWER: 发票怎么开"
    await asyncio.sleep(1.0)
    assert state.matching(SEND) == []


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_bot_simulate_wechat_mp_shows_the_passive_reply(
    mode: str, make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, capsys
) -> None:
    from bot.cli import simulate

    key = _aes_key() if mode == "safe" else ""
    client, settings = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, key, 4.5
    )
    state, _ = mp_api
    base = str(client.make_url("")).rstrip("/")
    assert await simulate.wechat_mp(base, settings, "simuser", "运费多少", 5) == 0
    assert "passive reply: 'ANSWER: 运费多少'" in capsys.readouterr().out
    assert state.matching(SEND) == []


# --- auto-reply rules, welcome, menu (bot/pipeline/autoreply.py) ----------------------------------


def _event(openid: str, nonce: str, **fields: str) -> tuple[dict, bytes]:
    body = wechat_mp_simulate.message_xml(
        "event", from_user=openid, to_user=GH, create_time=int(time.time()), **fields
    )
    return wechat_mp_simulate.plain_post(
        body, token="mp-e2e-token", timestamp=str(int(time.time())), nonce=nonce, openid=openid
    )


async def test_keyword_rule_from_the_admin_api_answers_without_the_model(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_api
) -> None:
    client, _ = await _stack(
        make_settings,
        make_client,
        celery_worker,
        fakes,
        wecom_app,
        mp_api,
        "",
        core={"admin_token": "tok"},
    )
    state, _ = mp_api
    auth = {"Authorization": "Bearer tok"}
    resp = await client.post(
        "/api/autoreply/rules",
        json={"match": "regex", "pattern": r"营业.{0,2}时间", "reply": "每天 9:00-18:00"},
        headers=auth,
    )
    assert resp.status == 201
    rule_id = (await resp.json())["rule"]["id"]
    await _post(client, *_plain("你们营业的时间是？", "oRuleUser", "72001"))
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["content"] == "每天 9:00-18:00"
    assert fakes.vllm.matching("/chat/completions") == []
    # Deleted in the running system: the next message goes to the model.
    assert (await client.delete(f"/api/autoreply/rules/{rule_id}", headers=auth)).status == 204
    await _post(client, *_plain("你们营业的时间是？", "oRuleUser", "72002"))
    await wait_for(lambda: len(state.sent) == 2)
    assert state.sent[1]["content"] == "ANSWER: 你们营业的时间是？"


async def test_configured_welcome_and_menu_replies(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_api
) -> None:
    client, _ = await _stack(
        make_settings,
        make_client,
        celery_worker,
        fakes,
        wecom_app,
        mp_api,
        "",
        welcome_text="欢迎关注小店！回复“发货”查询物流。",
        menu_replies={"V1001_HOURS": "营业时间 9:00-18:00"},
    )
    state, _ = mp_api
    await _post(client, *_event("oFan", "1", Event="subscribe", EventKey=""))
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0] == {
        "touser": "oFan",
        "content": "欢迎关注小店！回复“发货”查询物流。",
        "token": state.sent[0]["token"],
    }
    await _post(client, *_event("oClicker", "2", Event="CLICK", EventKey="V1001_HOURS"))
    await wait_for(lambda: len(state.sent) == 2)
    assert state.sent[1]["content"] == "营业时间 9:00-18:00"
    assert fakes.vllm.matching("/chat/completions") == []
    # A key without a configured reply is a question for the agent.
    await _post(client, *_event("oClicker2", "3", Event="CLICK", EventKey="运费"))
    await wait_for(lambda: len(state.sent) == 3)
    assert state.sent[2]["content"] == "ANSWER: 运费"


# --- no customer-service permission: deliver on the next message (48001) ----------------------


async def test_48001_answer_arrives_with_the_next_passive_reply(
    make_settings, make_client, celery_worker, fakes, wecom_app, mp_api
) -> None:
    client, settings = await _stack(
        make_settings, make_client, celery_worker, fakes, wecom_app, mp_api, "", 1.0
    )
    state, _ = mp_api
    state.refuse_custom_api = True  # every custom/send answers 48001, like the real account
    fakes.vllm.delay_s = 5
    query, body = _plain("退货地址是哪里", "oNoPerm", "73001")
    answers = [await _post_raw(client, query, body) for _try in range(3)]
    assert answers == [b"success"] * 3  # the answer was not ready in any try
    await wait_for(lambda: len(state.matching(SEND)) == 1)  # tried once: 48001
    await asyncio.sleep(0.5)
    fakes.vllm.delay_s = 0
    answer = await _post_raw(client, *_plain("发票怎么开", "oNoPerm", "73002"))
    assert _passive_content(answer, openid="oNoPerm") == (
        "您之前的问题：“退货地址是哪里”的回复如下：\nANSWER: 退货地址是哪里\n\nANSWER: 发票怎么开"
    )
    # Tried once (the 48001 that taught it); learning itself: test_wechat_mp_send.py.
    assert len(state.matching(SEND)) == 1
    assert state.sent == []
    # Recorded, not silent: the first answer was kept, the second went out passively.
    engine = get_engine(settings.core.effective_database_url())

    def kept() -> list[str]:
        with Session(engine) as s:
            return sorted(d.platform_msg_id for d in s.exec(select(Delivery)))

    await wait_for(lambda: kept() == ["deferred", "passive"], timeout_s=5)
