"""WeComAdapter.handle: URL check, callbacks, and every way a request must be refused."""

from __future__ import annotations

import base64
import logging
import struct
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from yarl import URL

from adapters.base import WebhookRequest
from adapters.wechat import crypto as wechat_crypto
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom.adapter import WeComAdapter
from adapters.xml import build_xml
from bot.domain import Attachment, Content, MessageKind, Platform
from bot.errors import (
    ConfigError,
    DecryptError,
    PayloadError,
    SignatureError,
    StaleRequestError,
    WebhookError,
)
from tests.unit.adapters.test_xml import BILLION_LAUGHS, EXTERNAL_ENTITY
from tests.vectors import Case, wechat_case, wechat_cases

CORP = "ww-test-corp"
AGENT = "1000002"
TOKEN = "test-token"
KEY_TEXT = ("wecomUnitTestKey" * 3)[:42] + "G"  # ours, not a vector; G: trailing bits
NOW = 1_700_000_000
PREFIX = b"fedcba9876543210"


def make_adapter(**overrides: Any) -> WeComAdapter:
    config: dict[str, Any] = {
        "corp_id": CORP,
        "agent_id": AGENT,
        "token": TOKEN,
        "aes_key": KEY_TEXT,
        "secret": "test-secret",
        "api_base": "http://127.0.0.1:9",
        "tokens": None,
        "app": "support",
    }
    return WeComAdapter(**{**config, **overrides})


def sealed(
    plaintext: bytes, *, corp_id: str = CORP, timestamp: int = NOW
) -> tuple[dict[str, str], bytes]:
    return wecom_simulate.seal(
        plaintext,
        corp_id=corp_id,
        agent_id=AGENT,
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp=str(timestamp),
        nonce="nonce-1",
        random_prefix=PREFIX,
    )


def post(query: dict[str, str], body: bytes, *, now: float = NOW) -> Any:
    request = WebhookRequest(method="POST", query=query, headers={}, body=body)
    return make_adapter().handle(request, now=now)


def text_callback(text: str = "你好，我的订单呢？") -> tuple[dict[str, str], bytes]:
    return wecom_simulate.build_callback(
        text,
        corp_id=CORP,
        agent_id=AGENT,
        token=TOKEN,
        aes_key=KEY_TEXT,
        from_user="zhangsan",
        msg_id="1234567890123456789",
        create_time=NOW - 1,
        timestamp=str(NOW),
        nonce="nonce-1",
        random_prefix=PREFIX,
    )


def as_received(query: dict[str, str]) -> Any:
    """The query as aiohttp hands it over: percent-encoded on the wire, decoded once."""
    return URL("/webhooks/wecom?" + urlencode(query)).query


# --- official vectors through the adapter ----------------------------------------------------


def _url_check_vectors() -> list[Any]:
    params = [
        pytest.param(case, id=case.id)
        for case in wechat_cases()
        if case.platform == "wecom" and case.use == "url_check"
    ]
    assert len(params) >= 3
    return params


@pytest.mark.parametrize("case", _url_check_vectors())
def test_url_verification_answers_bare_plaintext(case: Case) -> None:
    assert case.receive_id is not None
    assert case.plaintext is not None
    adapter = make_adapter(corp_id=case.receive_id, token=case.token, aes_key=case.encoding_aes_key)
    query = {
        "msg_signature": case.msg_signature,
        "timestamp": case.timestamp,
        "nonce": case.nonce,
        "echostr": case.encrypted,
    }
    request = WebhookRequest(method="GET", query=as_received(query), headers={}, body=b"")
    result = adapter.handle(request, now=float(case.timestamp))
    assert result.status == 200
    assert result.body == case.plaintext.encode()
    assert result.content_type == "text/plain"
    assert result.message is None


def test_official_post_vector_becomes_a_message() -> None:
    case = wechat_case("wecom-python-doc-post")
    assert case.receive_id is not None
    adapter = make_adapter(corp_id=case.receive_id, token=case.token, aes_key=case.encoding_aes_key)
    query = {"msg_signature": case.msg_signature, "timestamp": case.timestamp, "nonce": case.nonce}
    body = build_xml({"ToUserName": case.receive_id, "Encrypt": case.encrypted, "AgentID": "218"})
    request = WebhookRequest(method="POST", query=query, headers={}, body=body)
    result = adapter.handle(request, now=float(case.timestamp))
    assert result.status == 200
    assert result.body == b""
    message = result.message
    assert message is not None
    assert (message.sender_id, message.text, message.route) == (
        "mycreate",
        "hello",
        {"agent_id": "218"},
    )


def test_url_verification_with_our_own_request() -> None:
    query = wecom_simulate.build_verification(
        "echo-42",
        corp_id=CORP,
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp=str(NOW),
        nonce="n",
        random_prefix=PREFIX,
    )
    request = WebhookRequest(method="GET", query=as_received(query), headers={}, body=b"")
    assert make_adapter().handle(request, now=NOW).body == b"echo-42"


# --- accepted callbacks ----------------------------------------------------------------------


def test_text_message() -> None:
    result = post(*text_callback())
    assert (result.status, result.body) == (200, b"")
    message = result.message
    assert message is not None
    assert message.platform is Platform.WECOM
    assert message.app == "support"
    assert message.event_id == "1234567890123456789"
    assert message.conversation_id == message.sender_id == "zhangsan"
    assert message.text == "你好，我的订单呢？"
    assert message.kind is MessageKind.TEXT
    assert not message.is_group
    assert message.sent_at == datetime.fromtimestamp(NOW - 1, UTC)
    assert message.route == {"agent_id": AGENT}


def test_text_keeps_whitespace_and_markup() -> None:
    text = "  line one\n<b>]]>&amp;</b>  "
    message = post(*text_callback(text)).message
    assert message is not None
    assert message.text == text


def test_enter_agent_event() -> None:
    fields = wecom_simulate.event_fields(
        "enter_agent", corp_id=CORP, agent_id=AGENT, from_user="lisi", create_time=NOW
    )
    message = post(*sealed(build_xml(fields))).message
    assert message is not None
    assert message.kind is MessageKind.EVENT
    assert message.event_id == f"lisi:{NOW}:enter_agent"
    assert message.text == ""
    assert (message.event, message.route) == ("enter_agent", {"agent_id": AGENT})


@pytest.mark.parametrize(
    ("fields", "text", "kind"),
    [
        ({"MsgType": "image", "PicUrl": "http://x/p.png", "MediaId": "m"}, "[图片]", Content.IMAGE),
        ({"MsgType": "voice", "MediaId": "m", "Format": "amr"}, "[语音]", Content.VOICE),
        ({"MsgType": "video", "MediaId": "m", "ThumbMediaId": "t"}, "[视频]", Content.VIDEO),
        ({"MsgType": "location", "Label": "深圳", "Scale": "15"}, "[位置] 深圳", Content.LOCATION),
        ({"MsgType": "link", "Title": "说明", "Url": "http://x"}, "[链接] 说明", Content.LINK),
        ({"MsgType": "mixed"}, "[消息]", Content.OTHER),
    ],
)
def test_other_message_types_are_placeholders_answered_politely(
    fields: dict[str, str], text: str, kind: Content
) -> None:
    inner: dict[str, str | int] = {
        "ToUserName": CORP,
        "FromUserName": "u",
        "CreateTime": NOW,
        "MsgId": "7",
    }
    inner.update(fields)
    message = post(*sealed(build_xml(inner))).message
    assert message is not None
    assert (message.event_id, message.text, message.content) == ("7", text, kind)
    assert message.placeholder
    # A picture and voice are fetched (their MediaId); video is not read yet.
    fetched = kind in (Content.IMAGE, Content.VOICE)
    assert message.attachments == ((Attachment(kind, "m"),) if fetched else ())


@pytest.mark.parametrize(
    "fields",
    [
        {"MsgType": "event", "Event": "subscribe"},
        {"MsgType": "event", "Event": "click", "EventKey": "menu-1"},
    ],
)
def test_other_events_are_acknowledged_and_ignored(
    fields: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    inner: dict[str, str | int] = {"ToUserName": CORP, "FromUserName": "u", "CreateTime": NOW}
    inner.update(fields)
    with caplog.at_level(logging.INFO, logger="adapters.wecom.adapter"):
        result = post(*sealed(build_xml(inner)))
    assert (result.status, result.body, result.message) == (200, b"", None)
    assert fields["MsgType"] in caplog.text


def test_message_text_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        post(*text_callback("private words"))
    assert "private words" not in caplog.text


# --- refused callbacks -----------------------------------------------------------------------


def refused(query: dict[str, str], body: bytes, *, now: float = NOW) -> WebhookError:
    with pytest.raises(WebhookError) as caught:
        post(query, body, now=now)
    return caught.value


def test_wrong_signature_is_401() -> None:
    query, body = text_callback()
    error = refused({**query, "msg_signature": "0" * 40}, body)
    assert isinstance(error, SignatureError)
    assert error.status == 401


def test_signature_covers_the_encrypt_text() -> None:
    query, _ = text_callback()
    _, other_body = text_callback("a different message")
    assert isinstance(refused(query, other_body), SignatureError)


@pytest.mark.parametrize("skew_s", [-3600, 301])
def test_stale_timestamp_is_401(skew_s: int) -> None:
    error = refused(*text_callback(), now=NOW + skew_s)
    assert isinstance(error, StaleRequestError)
    assert error.status == 401


def test_message_for_another_corp_is_refused() -> None:
    # Signed with our token but sealed for another CorpID (WeCom -40005).
    error = refused(*sealed(b"<xml><MsgType>text</MsgType></xml>", corp_id="ww-other-corp"))
    assert isinstance(error, DecryptError)
    assert error.status == 400
    assert "receive id" in error.reason


def _seal_raw(padded: bytes) -> str:
    key = wechat_crypto.decode_aes_key(KEY_TEXT)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


@pytest.mark.parametrize("tail", [b"\x00", b"\x21", b"\x03\x03\x02"])
def test_corrupt_padding_is_refused(tail: bytes) -> None:
    inner = b"<xml></xml>"
    framed = PREFIX + struct.pack(">I", len(inner)) + inner + CORP.encode()
    padded = framed + b"z" * (-(len(framed) + len(tail)) % 32) + tail
    encrypted = _seal_raw(padded)
    query = {
        "msg_signature": wechat_crypto.signature(TOKEN, str(NOW), "n", encrypted),
        "timestamp": str(NOW),
        "nonce": "n",
    }
    error = refused(query, build_xml({"ToUserName": CORP, "Encrypt": encrypted}))
    assert isinstance(error, DecryptError)
    assert "padding" in error.reason


@pytest.mark.parametrize(
    "body",
    [pytest.param(BILLION_LAUGHS, id="billion-laughs"), pytest.param(EXTERNAL_ENTITY, id="xxe")],
)
def test_hostile_outer_xml_is_refused(body: bytes) -> None:
    query, _ = text_callback()
    assert isinstance(refused(query, body), PayloadError)


@pytest.mark.parametrize(
    "inner",
    [pytest.param(BILLION_LAUGHS, id="billion-laughs"), pytest.param(EXTERNAL_ENTITY, id="xxe")],
)
def test_hostile_inner_xml_is_refused_even_when_signed(inner: bytes) -> None:
    assert isinstance(refused(*sealed(inner)), PayloadError)


def test_missing_encrypt_is_refused() -> None:
    query, _ = text_callback()
    body = b"<xml><ToUserName><![CDATA[ww-test-corp]]></ToUserName><AgentID>1</AgentID></xml>"
    error = refused(query, body)
    assert isinstance(error, PayloadError)
    assert "Encrypt" in error.reason


@pytest.mark.parametrize("name", ["msg_signature", "timestamp", "nonce"])
def test_missing_query_parameter_is_refused(name: str) -> None:
    query, body = text_callback()
    del query[name]
    error = refused(query, body)
    assert isinstance(error, PayloadError)
    assert name in error.reason


def test_get_without_echostr_is_refused() -> None:
    query, _ = text_callback()
    request = WebhookRequest(method="GET", query=query, headers={}, body=b"")
    with pytest.raises(PayloadError, match="echostr"):
        make_adapter().handle(request, now=NOW)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
def test_other_methods_are_refused(method: str) -> None:
    query, body = text_callback()
    request = WebhookRequest(method=method, query=query, headers={}, body=body)
    with pytest.raises(PayloadError):
        make_adapter().handle(request, now=NOW)


@pytest.mark.parametrize(
    ("drop", "create_time"),
    [("MsgId", str(NOW)), ("FromUserName", str(NOW)), ("", "yesterday"), ("", "9" * 30)],
)
def test_text_message_with_bad_fields_is_refused(drop: str, create_time: str) -> None:
    inner = {
        "ToUserName": CORP,
        "FromUserName": "u",
        "CreateTime": create_time,
        "MsgType": "text",
        "Content": "hi",
        "MsgId": "1",
    }
    inner.pop(drop, None)
    assert isinstance(refused(*sealed(build_xml(inner))), PayloadError)


# --- configuration and splitting ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"aes_key": "too-short"},
        {"aes_key": KEY_TEXT[:-1] + "!"},
        {"corp_id": ""},
        {"token": ""},
        {"secret": ""},
        {"agent_id": "abc"},
    ],
)
def test_bad_configuration_is_a_config_error(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        make_adapter(**overrides)
    assert KEY_TEXT not in str(caught.value)
    assert "test-secret" not in str(caught.value)


def test_split_flattens_markdown_and_fits_2048_bytes() -> None:
    text = "## 标题\n\n" + "**重要**：请保留您的订单号。" * 300
    parts = make_adapter().split(text)
    assert len(parts) > 1
    assert all(len(part.encode()) <= 2048 for part in parts)
    assert parts[0].startswith("标题\n\n重要：")
    assert not any("**" in part for part in parts)
