"""WeChatMPAdapter.handle in all three modes, the passive-reply builders, and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.base import WebhookRequest
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat_mp import simulate as wechat_mp_simulate
from adapters.wechat_mp.adapter import (
    IMAGE_TEXT,
    VOICE_TEXT,
    WeChatMPAdapter,
    encrypt_reply,
    passive_text,
)
from adapters.xml import build_xml, parse_xml
from bot.domain import Attachment, Content, MessageKind, Platform
from bot.errors import (
    ConfigError,
    PayloadError,
    SignatureError,
    StaleRequestError,
    WebhookError,
)
from tests.unit.adapters.test_xml import BILLION_LAUGHS, EXTERNAL_ENTITY
from tests.vectors import plain_signature_case, plain_signature_cases, wechat_case

APP_ID = "wx-unit-test-app"
TOKEN = "mp-test-token"
KEY_TEXT = ("mpUnitTestKey" * 4)[:42] + "G"  # ours, not a vector; G: trailing bits
NOW = 1_700_000_000
PREFIX = b"0123456789abcdef"
OPENID = "oUser123"
GH = "gh_test"


def make_adapter(**overrides: Any) -> WeChatMPAdapter:
    config: dict[str, Any] = {
        "app_id": APP_ID,
        "app_secret": "test-secret",
        "token": TOKEN,
        "aes_key": "",
        "api_base": "http://127.0.0.1:9",
        "tokens": None,
        "app": "shop",
    }
    return WeChatMPAdapter(**{**config, **overrides})


def request(method: str, query: dict[str, str], body: bytes = b"") -> WebhookRequest:
    return WebhookRequest(method=method, query=query, headers={}, body=body)


def xml(msg_type: str = "text", **fields: str) -> bytes:
    if msg_type == "text":
        fields = {"Content": "你好", "MsgId": "6054768590064713728", **fields}
    return wechat_mp_simulate.message_xml(
        msg_type, from_user=OPENID, to_user=GH, create_time=NOW - 1, **fields
    )


def plain(body: bytes, *, token: str = TOKEN, timestamp: int = NOW) -> tuple[dict, bytes]:
    return wechat_mp_simulate.plain_post(
        body, token=token, timestamp=str(timestamp), nonce="n1", openid=OPENID
    )


def safe(body: bytes, *, app_id: str = APP_ID, timestamp: int = NOW) -> tuple[dict, bytes]:
    return wechat_mp_simulate.safe_post(
        body,
        token=TOKEN,
        aes_key=KEY_TEXT,
        app_id=app_id,
        timestamp=str(timestamp),
        nonce="n2",
        openid=OPENID,
        to_user=GH,
        random_prefix=PREFIX,
    )


def accept(adapter: WeChatMPAdapter, query: dict, body: bytes, *, now: float = NOW) -> Any:
    result = adapter.handle(request("POST", query, body), now=now)
    assert (result.status, result.body, result.content_type) == (200, b"success", "text/plain")
    return result.message


def refused(adapter: WeChatMPAdapter, query: dict, body: bytes, *, now: float = NOW) -> Any:
    with pytest.raises(WebhookError) as info:
        adapter.handle(request("POST", query, body), now=now)
    return info.value


# --- URL verification -------------------------------------------------------------------


def test_url_verification_vector_echoes_echostr() -> None:
    case = plain_signature_case("mp-wechatpy-plain")
    adapter = make_adapter(token=case.token)
    query = {
        "signature": case.signature,
        "timestamp": case.timestamp,
        "nonce": case.nonce,
        "echostr": "4389264792367",
    }
    result = adapter.handle(request("GET", query), now=int(case.timestamp) + 5)
    assert (result.status, result.body, result.message) == (200, b"4389264792367", None)


@pytest.mark.parametrize("aes_key", ["", KEY_TEXT])
def test_url_verification_is_plain_in_every_mode(aes_key: str) -> None:
    query = wechat_mp_simulate.verification_query(
        token=TOKEN, timestamp=str(NOW), nonce="x", echostr="a+b/c="
    )
    result = make_adapter(aes_key=aes_key).handle(request("GET", query), now=NOW)
    assert result.body == b"a+b/c="


def test_url_verification_with_wrong_signature_is_401() -> None:
    query = wechat_mp_simulate.verification_query(
        token="other", timestamp=str(NOW), nonce="x", echostr="e"
    )
    with pytest.raises(SignatureError) as info:
        make_adapter().handle(request("GET", query), now=NOW)
    assert info.value.status == 401


# --- official encrypted vectors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "compat"), [("mp-python-compat", True), ("mp-cpp-safe", False)]
)
def test_official_encrypted_post_vectors_decrypt_through_the_adapter(
    case_id: str, compat: bool
) -> None:
    case = wechat_case(case_id)
    assert case.receive_id is not None
    assert case.plaintext is not None
    adapter = make_adapter(app_id=case.receive_id, token=case.token, aes_key=case.encoding_aes_key)
    fields = parse_xml(case.plaintext.encode())
    outer: dict[str, str | int] = {"ToUserName": fields["ToUserName"]}
    if compat:
        outer.update(fields)  # compat mode: plaintext fields beside Encrypt
    body = build_xml({**outer, "Encrypt": case.encrypted})
    sent_with = {p.id: p.signature for p in plain_signature_cases()}
    query = {
        # A wrong `signature` on purpose: encrypted modes must not look at it for the body.
        "signature": sent_with.get(case.id, "0" * 40),
        "timestamp": case.timestamp,
        "nonce": case.nonce,
        "openid": fields["FromUserName"],
        "encrypt_type": "aes",
        "msg_signature": case.msg_signature,
    }
    message = accept(adapter, query, body, now=int(case.timestamp) + 10)
    assert message.platform is Platform.WECHAT_MP
    assert (message.event_id, message.text) == (fields["MsgId"], "abcdteT")
    assert message.sender_id == message.conversation_id == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert message.route["to_user"] == "gh_10f6c3c3ac5a"


def test_compat_mode_trusts_only_the_encrypted_fields() -> None:
    inner = xml(Content="真的内容")
    forged: dict[str, str | int] = {
        "ToUserName": GH,
        "FromUserName": "oAttacker",
        "CreateTime": NOW,
        "MsgType": "text",
        "Content": "forged",
        "MsgId": "1",
    }
    query, body = wechat_mp_simulate.compat_post(
        inner,
        forged,
        token=TOKEN,
        aes_key=KEY_TEXT,
        app_id=APP_ID,
        timestamp=str(NOW),
        nonce="n",
        openid=OPENID,
        random_prefix=PREFIX,
    )
    message = accept(make_adapter(aes_key=KEY_TEXT), query, body)
    assert (message.sender_id, message.text) == (OPENID, "真的内容")


# --- message types ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_text_message(mode: str) -> None:
    adapter = make_adapter(aes_key=KEY_TEXT if mode == "safe" else "")
    query, body = (safe if mode == "safe" else plain)(xml(Content="  退货 <b>吗</b>\n"))
    message = accept(adapter, query, body)
    assert message.kind is MessageKind.TEXT
    assert message.app == "shop"
    assert (message.event_id, message.text) == ("6054768590064713728", "  退货 <b>吗</b>\n")
    assert message.sent_at.timestamp() == NOW - 1
    # create_time opens the 客服消息 window; question is quoted by a deferred answer's notice.
    assert (message.content, message.placeholder, message.question) == (
        Content.TEXT,
        False,
        "退货 <b>吗</b>",
    )
    assert message.route == {
        "to_user": GH,
        "create_time": str(NOW - 1),
        "question": "退货 <b>吗</b>",
        "via": "message",
    }


def test_image_message() -> None:
    body = xml("image", PicUrl="http://p/1.jpg", MediaId="media1", MsgId="77")
    message = accept(make_adapter(), *plain(body))
    assert (message.event_id, message.text, message.content) == ("77", IMAGE_TEXT, Content.IMAGE)
    assert message.placeholder  # answered politely, never by a model guessing at "[图片]"
    assert message.attachments == (Attachment(Content.IMAGE, "media1"),)


def test_voice_with_recognition_is_its_text() -> None:
    body = xml("voice", MediaId="m", Format="amr", Recognition="我要退货", MsgId="78")
    message = accept(make_adapter(), *plain(body))
    assert (message.text, message.kind) == ("我要退货", MessageKind.TEXT)
    assert (message.content, message.placeholder) == (Content.VOICE, False)


def test_voice_without_recognition_is_flagged() -> None:
    body = xml("voice", MediaId="m", Format="amr", MsgId="79")
    message = accept(make_adapter(), *plain(body))
    assert (message.text, message.content, message.placeholder) == (VOICE_TEXT, Content.VOICE, True)


def test_subscribe_with_qrscene() -> None:
    body = xml("event", Event="subscribe", EventKey="qrscene_spring2026", Ticket="t")
    message = accept(make_adapter(), *plain(body))
    assert message.kind is MessageKind.EVENT
    assert message.event_id == f"{OPENID}:{NOW - 1}:subscribe"
    assert (message.event, message.event_key) == ("subscribe", "spring2026")


def test_plain_subscribe_has_no_qrscene() -> None:
    message = accept(make_adapter(), *plain(xml("event", Event="subscribe", EventKey="")))
    assert message.kind is MessageKind.EVENT
    assert (message.event, message.event_key) == ("subscribe", "")


def test_unsubscribe_is_acknowledged_and_ignored() -> None:
    assert accept(make_adapter(), *plain(xml("event", Event="unsubscribe"))) is None


def test_click_is_a_question_with_the_key() -> None:
    message = accept(make_adapter(), *plain(xml("event", Event="CLICK", EventKey="退货政策")))
    assert (message.kind, message.text) == (MessageKind.TEXT, "退货政策")
    assert (message.event, message.event_key) == ("CLICK", "退货政策")
    assert message.event_id == f"{OPENID}:{NOW - 1}:CLICK"


def test_scan_event() -> None:
    message = accept(make_adapter(), *plain(xml("event", Event="SCAN", EventKey="123")))
    assert message.kind is MessageKind.EVENT
    assert (message.event, message.event_key) == ("SCAN", "123")


def test_view_event_is_acknowledged_and_ignored() -> None:
    assert accept(make_adapter(), *plain(xml("event", Event="VIEW", EventKey="http://x"))) is None


@pytest.mark.parametrize(
    ("msg_type", "fields", "text", "kind"),
    [
        ("location", {"Label": "北京市", "Location_X": "39.9"}, "[位置] 北京市", Content.LOCATION),
        ("video", {"MediaId": "m"}, "[视频]", Content.VIDEO),
        ("shortvideo", {"MediaId": "m"}, "[视频]", Content.VIDEO),
        ("link", {"Title": "订单页", "Url": "http://x"}, "[链接] 订单页", Content.LINK),
        ("miniprogrampage", {}, "[消息]", Content.OTHER),
    ],
)
def test_other_message_types_are_placeholders_answered_politely(
    msg_type: str, fields: dict, text: str, kind: Content
) -> None:
    message = accept(make_adapter(), *plain(xml(msg_type, MsgId="5", **fields)))
    assert message is not None
    assert (message.text, message.content, message.placeholder) == (text, kind, True)
    assert message.question == ""


# --- refusals ---------------------------------------------------------------------------


def test_plaintext_with_wrong_signature_is_401() -> None:
    error = refused(make_adapter(), *plain(xml(), token="not-ours"))
    assert isinstance(error, SignatureError)
    assert error.status == 401


def test_plaintext_stale_timestamp_is_401() -> None:
    error = refused(make_adapter(), *plain(xml()), now=NOW + 301)
    assert isinstance(error, StaleRequestError)
    assert error.status == 401


def test_encrypted_with_valid_signature_but_wrong_msg_signature_is_401() -> None:
    query, body = safe(xml())
    query["msg_signature"] = wechat_crypto.signature(TOKEN, str(NOW), "n2", "something else")
    error = refused(make_adapter(aes_key=KEY_TEXT), query, body)
    assert isinstance(error, SignatureError)
    assert error.status == 401


def test_message_sealed_for_another_app_is_refused() -> None:
    error = refused(make_adapter(aes_key=KEY_TEXT), *safe(xml(), app_id="wx-other"))
    assert error.status == 400


def test_plaintext_post_is_refused_when_a_key_is_configured() -> None:
    assert isinstance(refused(make_adapter(aes_key=KEY_TEXT), *plain(xml())), PayloadError)


def test_encrypted_post_is_refused_without_a_key() -> None:
    assert isinstance(refused(make_adapter(), *safe(xml())), PayloadError)


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, b"<xml><a>", b"not xml"])
def test_hostile_xml_is_400(body: bytes) -> None:
    error = refused(make_adapter(), *plain(body))
    assert isinstance(error, PayloadError)
    assert error.status == 400


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_hostile_inner_xml_is_400_even_when_signed(body: bytes) -> None:
    error = refused(make_adapter(aes_key=KEY_TEXT), *safe(body))
    assert isinstance(error, PayloadError)


@pytest.mark.parametrize("drop", ["FromUserName", "CreateTime", "MsgId"])
def test_text_missing_fields_is_400(drop: str) -> None:
    fields = {"Content": "x", "MsgId": "1"}
    body = wechat_mp_simulate.message_xml(
        "text", from_user=OPENID, to_user=GH, create_time=NOW, **fields
    )
    parsed = {k: v for k, v in parse_xml(body).items() if k != drop}
    error = refused(make_adapter(), *plain(build_xml(parsed)))
    assert isinstance(error, PayloadError)


def test_other_methods_are_refused() -> None:
    with pytest.raises(PayloadError):
        make_adapter().handle(request("PUT", {}), now=NOW)


@pytest.mark.parametrize(
    "overrides", [{"app_id": ""}, {"app_secret": ""}, {"token": ""}, {"aes_key": "short"}]
)
def test_bad_configuration_is_a_config_error(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        make_adapter(**overrides)


# --- outbound shaping and passive replies ---------------------------------------------------


def test_split_flattens_markdown_and_fits_2048_bytes() -> None:
    parts = make_adapter().split("**注意**：" + "这是一句很长的说明。" * 200)
    assert parts[0].startswith("注意：")
    assert len(parts) > 1
    assert all(len(p.encode()) <= 2048 for p in parts)


def test_passive_text_swaps_to_and_from() -> None:
    built = passive_text(OPENID, GH, "您好 ]]> 世界", 1_700_000_123)
    fields = parse_xml(built)
    assert fields == {
        "ToUserName": OPENID,
        "FromUserName": GH,
        "CreateTime": "1700000123",
        "MsgType": "text",
        "Content": "您好 ]]> 世界",
    }


def test_encrypt_reply_matches_the_published_envelope() -> None:
    # wechatpy's test_encrypt_message: the Open Platform / MP scheme, receive id = AppID.
    case = wechat_case("wecom-wechatpy-reply")
    assert case.plaintext is not None
    assert case.receive_id is not None
    envelope = encrypt_reply(
        case.plaintext.encode(),
        token=case.token,
        aes_key=wechat_crypto.decode_aes_key(case.encoding_aes_key),
        app_id=case.receive_id,
        timestamp=case.timestamp,
        nonce=case.nonce,
        random_prefix=case.random.encode(),
    )
    assert envelope.decode() == case.reply_xml


def test_encrypt_reply_round_trips_through_the_platform_algorithm() -> None:
    reply = passive_text(OPENID, GH, "答复", NOW)
    key = wechat_crypto.decode_aes_key(KEY_TEXT)
    envelope = parse_xml(
        encrypt_reply(
            reply,
            token=TOKEN,
            aes_key=key,
            app_id=APP_ID,
            timestamp=str(NOW),
            nonce="n9",
            random_prefix=PREFIX,
        )
    )
    wechat_crypto.verify(
        envelope["MsgSignature"],
        token=TOKEN,
        timestamp=envelope["TimeStamp"],
        nonce=envelope["Nonce"],
        encrypted=envelope["Encrypt"],
        now=NOW,
    )
    assert wechat_crypto.decrypt(envelope["Encrypt"], aes_key=key, receiver_id=APP_ID) == reply


# --- recorded payloads (tests/payloads/wechat_mp/README.md) ---------------------------------

PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "wechat_mp"


@pytest.mark.parametrize(
    ("name", "kind", "event_id", "text", "typed"),
    [
        ("text", MessageKind.TEXT, "1234567890123456", "this is a test", {}),
        (
            "image",
            MessageKind.TEXT,
            "1234567890123456",
            IMAGE_TEXT,
            {"content": Content.IMAGE, "placeholder": True},
        ),
        (
            "voice",
            MessageKind.TEXT,
            "1234567890123456",
            VOICE_TEXT,
            {"content": Content.VOICE, "placeholder": True},
        ),
        ("voice_recognition", MessageKind.TEXT, "1234567890123456", "腾讯微信团队", {}),
        ("subscribe", MessageKind.EVENT, "FromUser:123456789:subscribe", "", {}),
        (
            "subscribe_qrscene",
            MessageKind.EVENT,
            "FromUser:123456789:subscribe",
            "",
            {"event_key": "123123"},
        ),
        ("scan", MessageKind.EVENT, "FromUser:123456789:SCAN", "", {"event_key": "SCENE_VALUE"}),
        (
            "click",
            MessageKind.TEXT,
            "FromUser:123456789:CLICK",
            "EVENTKEY",
            {"event_key": "EVENTKEY"},
        ),
    ],
)
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_recorded_payload_becomes_a_message(
    mode: str, name: str, kind: MessageKind, event_id: str, text: str, typed: dict[str, object]
) -> None:
    body = (PAYLOADS / f"{name}.xml").read_bytes()
    adapter = make_adapter(aes_key=KEY_TEXT if mode == "safe" else "")
    message = accept(adapter, *(safe if mode == "safe" else plain)(body))
    assert (message.kind, message.event_id, message.text) == (kind, event_id, text)
    assert message.sender_id in ("fromUser", "FromUser")
    assert message.route["to_user"] == "toUser"
    for field, value in typed.items():
        assert getattr(message, field) == value, field


def test_recorded_unsubscribe_is_ignored() -> None:
    body = (PAYLOADS / "unsubscribe.xml").read_bytes()
    assert accept(make_adapter(), *plain(body)) is None


# --- render_passive (the glue bot/pipeline/passive.py uses) ---------------------------------------


def test_render_passive_plaintext_answers_the_sender() -> None:
    adapter = make_adapter(passive_wait_s=4.5)
    assert (adapter.passive_wait_s, adapter.passive_tries) == (4.5, 3)
    query, body = plain(xml())
    message = accept(adapter, query, body)
    fields = parse_xml(adapter.render_passive(message, "答案", request("POST", query, body)))
    assert (fields["ToUserName"], fields["FromUserName"]) == (OPENID, GH)
    assert (fields["MsgType"], fields["Content"]) == ("text", "答案")


def test_render_passive_safe_mode_is_sealed_with_the_requests_timestamp_and_nonce() -> None:
    adapter = make_adapter(aes_key=KEY_TEXT)
    query, body = safe(xml())
    message = accept(adapter, query, body)
    envelope = parse_xml(adapter.render_passive(message, "答案", request("POST", query, body)))
    assert (envelope["TimeStamp"], envelope["Nonce"]) == (str(NOW), "n2")
    assert envelope["MsgSignature"] == wechat_crypto.signature(
        TOKEN, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
    )
    inner = wechat_crypto.decrypt(
        envelope["Encrypt"], aes_key=wechat_crypto.decode_aes_key(KEY_TEXT), receiver_id=APP_ID
    )
    fields = parse_xml(inner)
    assert (fields["ToUserName"], fields["FromUserName"], fields["Content"]) == (
        OPENID,
        GH,
        "答案",
    )
