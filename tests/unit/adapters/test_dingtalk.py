"""DingTalkAdapter.handle: robot messages, encrypted events, and every refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.base import WebhookRequest
from adapters.dingtalk import simulate as dingtalk_simulate
from adapters.dingtalk.adapter import DingTalkAdapter, encrypted_answer
from adapters.dingtalk.client import markdown_title
from adapters.wechat import crypto as wechat_crypto
from bot.domain import Attachment, Content, MessageKind, Platform
from bot.errors import (
    ConfigError,
    DecryptError,
    PayloadError,
    SignatureError,
    StaleRequestError,
)
from tests.vectors import event_response_cases, wechat_case

APP_KEY = "dingtestappkey"
SECRET = "dingtalk-unit-secret"
TOKEN = "dt-token"
KEY_TEXT = ("dingtalkUnitKey0" * 3)[:42] + "7"  # ours, not a vector; 7: trailing bits
NOW_MS = 1_700_000_000_123
NOW = NOW_MS / 1000
PREFIX = b"0123456789abcdef"
HOOK = "https://oapi.dingtalk.com/robot/sendBySession?session=abc"


def make_adapter(**overrides: Any) -> DingTalkAdapter:
    config: dict[str, Any] = {
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "robot_code": "",
        "token": TOKEN,
        "aes_key": KEY_TEXT,
        "api_base": "http://127.0.0.1:9",
        "tokens": None,
        "app": "support",
    }
    return DingTalkAdapter(**{**config, **overrides})


def robot_request(
    body: dict[str, Any], *, timestamp_ms: int = NOW_MS, secret: str = SECRET
) -> WebhookRequest:
    headers = dingtalk_simulate.robot_headers(app_secret=secret, timestamp_ms=timestamp_ms)
    return WebhookRequest(
        method="POST",
        query={},
        headers={k.lower(): v for k, v in headers.items()},
        body=json.dumps(body, ensure_ascii=False).encode(),
    )


def body(text: str = "怎么退货", **kw: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "msg_id": "msgABC==",
        "staff_id": "manager4220",
        "conversation_id": "cidXYZ==",
        "session_webhook": HOOK,
        "create_at_ms": NOW_MS - 500,
    }
    return dingtalk_simulate.robot_body(text, **{**config, **kw})


def event_request(
    event: dict[str, Any], *, app_key: str = APP_KEY, timestamp_ms: int = NOW_MS
) -> WebhookRequest:
    query, raw = dingtalk_simulate.build_event(
        event,
        app_key=app_key,
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp_ms=timestamp_ms,
        nonce="nonce123",
        random_prefix=PREFIX,
    )
    return WebhookRequest(method="POST", query=query, headers={}, body=raw)


# --- robot messages -----------------------------------------------------------------------


def test_one_to_one_text_is_queued_with_what_the_reply_needs() -> None:
    result = make_adapter().handle(robot_request(body()), now=NOW)
    assert (result.status, result.body, result.content_type) == (200, b"{}", "application/json")
    msg = result.message
    assert msg is not None
    assert (msg.platform, msg.app, msg.event_id) == (Platform.DINGTALK, "support", "msgABC==")
    assert (msg.conversation_id, msg.sender_id, msg.text) == ("cidXYZ==", "manager4220", "怎么退货")
    assert msg.is_group is False
    assert msg.sent_at == datetime.fromtimestamp((NOW_MS - 500) / 1000, UTC)
    assert (msg.content, msg.placeholder, msg.attachments) == (Content.TEXT, False, ())
    assert msg.route == {
        "sessionWebhook": HOOK,
        "sessionWebhookExpiredTime": str(NOW_MS - 500 + dingtalk_simulate.SESSION_TTL_MS),
        "conversationType": "1",
        "conversationId": "cidXYZ==",
        "senderStaffId": "manager4220",
        "robotCode": APP_KEY,
        "senderNick": "manager4220",  # what a group AI card's @-mention shows
    }


def test_group_at_robot_is_queued_with_the_text_stripped() -> None:
    result = make_adapter().handle(robot_request(body("  发票怎么开 ", group=True)), now=NOW)
    msg = result.message
    assert msg is not None
    assert (msg.text, msg.is_group, msg.route["conversationType"]) == ("发票怎么开", True, "2")


def test_group_message_without_at_is_ignored() -> None:
    request = robot_request(body("随便聊聊", group=True, at_robot=False))
    result = make_adapter().handle(request, now=NOW)
    assert (result.status, result.body, result.message) == (200, b"{}", None)


def test_sender_without_staff_id_uses_sender_id() -> None:
    data = body()
    data["senderStaffId"] = ""
    msg = make_adapter().handle(robot_request(data), now=NOW).message
    assert msg is not None
    assert msg.sender_id == data["senderId"]


def test_rich_text_joins_its_texts() -> None:
    content = {
        "richText": [
            {"text": "第一段"},
            {"downloadCode": "img", "type": "picture"},
            {"text": "第二段 "},
        ]
    }
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="richText", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert msg.text == "第一段\n第二段"
    # The text is answered by the agent; the picture is only fetched (not "unsupported").
    assert msg.attachments == (Attachment(Content.IMAGE, "img"),)
    assert (msg.content, msg.placeholder) == (Content.TEXT, False)


def test_rich_text_of_images_only_is_a_picture() -> None:
    content = {
        "richText": [{"downloadCode": "i1", "type": "picture"}, {"pictureDownloadCode": "i2"}]
    }
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="richText", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert (msg.text, msg.placeholder, msg.content) == ("[图片]", True, Content.IMAGE)
    assert [a.ref for a in msg.attachments] == ["i1", "i2"]


def test_audio_uses_the_recognition() -> None:
    content = {"recognition": "我要退货", "downloadCode": "abc", "duration": 3000}
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="audio", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert (msg.text, msg.content, msg.placeholder) == ("我要退货", Content.VOICE, False)
    assert msg.attachments == ()  # transcribed already: the recording is not fetched


def test_audio_without_recognition_is_a_placeholder() -> None:
    content = {"downloadCode": "abc", "duration": 3000}
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="audio", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert (msg.text, msg.content, msg.placeholder) == ("[语音]", Content.VOICE, True)
    # The recording is fetched for the bot's own speech recognition (bot/pipeline/voice.py).
    assert msg.attachments == (Attachment(Content.VOICE, "abc"),)


def test_picture_becomes_a_placeholder_text() -> None:
    content = {"downloadCode": "abc", "pictureDownloadCode": "def"}
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="picture", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert msg.text == "[图片]"
    # downloadCode first: the worker fetches it; a placeholder gets the polite fixed answer.
    assert msg.attachments == (Attachment(Content.IMAGE, "abc"),)
    assert (msg.content, msg.placeholder) == (Content.IMAGE, True)


def test_file_becomes_a_placeholder_with_its_name() -> None:
    content = {"downloadCode": "x", "fileName": "合同.pdf", "fileId": "f1", "spaceId": "s1"}
    msg = (
        make_adapter().handle(robot_request(body(msgtype="file", content=content)), now=NOW).message
    )
    assert msg is not None
    assert (msg.text, msg.content, msg.placeholder) == ("[文件] 合同.pdf", Content.FILE, True)
    assert msg.attachments == (Attachment(Content.FILE, "x", "合同.pdf"),)


def test_video_becomes_a_placeholder() -> None:
    content = {"downloadCode": "v", "duration": 12, "videoType": "mp4"}
    msg = (
        make_adapter()
        .handle(robot_request(body(msgtype="video", content=content)), now=NOW)
        .message
    )
    assert msg is not None
    assert (msg.text, msg.content, msg.placeholder) == ("[视频]", Content.VIDEO, True)


def test_unreadable_type_is_a_placeholder_answered_politely() -> None:
    # Never silent: a type the robot cannot read is answered with the fixed polite text.
    request = robot_request(body(msgtype="interactiveCard", content={"cardData": "{}"}))
    result = make_adapter().handle(request, now=NOW)
    assert result.status == 200
    assert result.message is not None
    assert (result.message.text, result.message.content, result.message.placeholder) == (
        "[消息]",
        Content.OTHER,
        True,
    )


def test_bad_sign_is_refused() -> None:
    with pytest.raises(SignatureError) as info:
        make_adapter().handle(robot_request(body(), secret="other-secret"), now=NOW)
    assert info.value.status == 401


def test_changed_timestamp_header_is_refused() -> None:
    request = robot_request(body())
    headers = dict(request.headers, timestamp=str(NOW_MS + 1))
    with pytest.raises(SignatureError):
        make_adapter().handle(WebhookRequest("POST", {}, headers, request.body), now=NOW)


def test_stale_timestamp_is_refused() -> None:
    stale = NOW_MS - 3601 * 1000
    with pytest.raises(StaleRequestError) as info:
        make_adapter().handle(robot_request(body(), timestamp_ms=stale), now=NOW)
    assert info.value.status == 401


@pytest.mark.parametrize("missing", ["sign", "timestamp"])
def test_missing_header_is_refused(missing: str) -> None:
    request = robot_request(body())
    headers = {k: v for k, v in request.headers.items() if k != missing}
    with pytest.raises(SignatureError):
        make_adapter().handle(WebhookRequest("POST", {}, headers, request.body), now=NOW)


def test_no_headers_and_no_query_is_refused() -> None:
    request = WebhookRequest("POST", {}, {}, json.dumps(body()).encode())
    with pytest.raises(SignatureError):
        make_adapter().handle(request, now=NOW)


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"msgtype": "text"}'])
def test_signed_but_malformed_body_is_a_payload_error(raw: bytes) -> None:
    request = robot_request(body())
    with pytest.raises(PayloadError):
        make_adapter().handle(WebhookRequest("POST", {}, request.headers, raw), now=NOW)


def test_get_is_refused() -> None:
    with pytest.raises(PayloadError):
        make_adapter().handle(WebhookRequest("GET", {}, {}, b""), now=NOW)


# --- encrypted event subscription ---------------------------------------------------------


def test_check_url_answers_encrypted_success() -> None:
    result = make_adapter().handle(event_request({"EventType": "check_url"}), now=NOW)
    assert (result.status, result.content_type) == (200, "application/json")
    # Queued to be recorded by the worker, never answered.
    assert result.message is not None
    assert (result.message.kind, result.message.event) == (MessageKind.NOTICE, "check_url")
    answer = json.loads(result.body)
    assert set(answer) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    # It verifies with our token and decrypts to "success" with our key and AppKey.
    wechat_crypto.verify(
        answer["msg_signature"],
        token=TOKEN,
        timestamp=answer["timeStamp"],
        nonce=answer["nonce"],
        encrypted=answer["encrypt"],
        now=NOW,
        timestamp_ms=True,
    )
    plain = wechat_crypto.decrypt(
        answer["encrypt"], aes_key=wechat_crypto.decode_aes_key(KEY_TEXT), receiver_id=APP_KEY
    )
    assert plain == b"success"


def test_two_answers_use_fresh_randomness() -> None:
    adapter = make_adapter()
    first = json.loads(adapter.handle(event_request({"EventType": "check_url"}), now=NOW).body)
    second = json.loads(adapter.handle(event_request({"EventType": "check_url"}), now=NOW).body)
    assert first["encrypt"] != second["encrypt"]


def test_other_events_are_acknowledged_and_queued_to_be_recorded() -> None:
    event = {"EventType": "user_add_org", "CorpId": "dingcorp", "UserId": ["u1"], "TimeStamp": 1}
    result = make_adapter().handle(event_request(event), now=NOW)
    assert result.status == 200
    assert set(json.loads(result.body)) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    msg = result.message
    assert msg is not None
    assert (msg.kind, msg.app, msg.event, msg.route["corpId"]) == (
        MessageKind.NOTICE,
        "support",
        "user_add_org",
        "dingcorp",
    )
    assert json.loads(msg.text) == {
        "EventType": "user_add_org",
        "CorpId": "dingcorp",
        "UserId": ["u1"],
        "TimeStamp": 1,
    }
    # Its own conversation namespace: its queue ticket never delays a real chat's turn.
    assert msg.conversation_id == "event:dingcorp"


def test_a_retried_event_keeps_its_event_id() -> None:
    # The ciphertext differs on every push (random prefix); the id must not.
    event = {"EventType": "chat_disband", "ChatId": "chat1", "CorpId": "c", "TimeStamp": 5}
    adapter = make_adapter()
    first = adapter.handle(event_request(event), now=NOW).message
    query, raw = dingtalk_simulate.build_event(
        event,
        app_key=APP_KEY,
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp_ms=NOW_MS + 60_000,
        nonce="othernonce",
        random_prefix=b"fedcba9876543210",
    )
    second = adapter.handle(WebhookRequest("POST", query, {}, raw), now=NOW + 60).message
    assert first is not None
    assert second is not None
    assert first.event_id == second.event_id
    assert first.event_id.startswith("event:")


def test_event_id_from_the_payload_is_used_when_present() -> None:
    event = {"EventType": "chat_quit", "EventId": "ev-42", "ChatId": "chat1"}
    msg = make_adapter().handle(event_request(event), now=NOW).message
    assert msg is not None
    assert msg.event_id == "event:ev-42"


def test_event_sealed_for_another_app_is_refused() -> None:
    with pytest.raises(DecryptError) as info:
        make_adapter().handle(
            event_request({"EventType": "check_url"}, app_key="ding-other"), now=NOW
        )
    assert info.value.status == 400


def test_event_with_bad_signature_is_refused() -> None:
    request = event_request({"EventType": "check_url"})
    query = dict(request.query, nonce="changed")
    with pytest.raises(SignatureError):
        make_adapter().handle(WebhookRequest("POST", query, {}, request.body), now=NOW)


def test_stale_event_is_refused() -> None:
    request = event_request({"EventType": "check_url"}, timestamp_ms=NOW_MS - 3601 * 1000)
    with pytest.raises(StaleRequestError):
        make_adapter().handle(request, now=NOW)


def test_events_without_subscription_config_are_refused() -> None:
    adapter = make_adapter(token="", aes_key="")
    with pytest.raises(PayloadError):
        adapter.handle(event_request({"EventType": "check_url"}), now=NOW)


def test_encrypted_answer_matches_known_answer() -> None:
    # KA: "dingtalk encrypted 'success' response JSON" (derived, cross-checked with the
    # official DingCallbackCrypto3.getDecryptMsg).
    (ka,) = event_response_cases()
    case = ka.case
    assert case.plaintext is not None
    assert case.receive_id is not None
    answer = encrypted_answer(
        case.plaintext,
        token=case.token,
        aes_key=wechat_crypto.decode_aes_key(case.encoding_aes_key),
        receive_id=case.receive_id,
        timestamp=case.timestamp,
        nonce=case.nonce,
        random_prefix=case.random.encode(),
    )
    assert answer == ka.response


def test_adapter_accepts_the_official_check_url_vector() -> None:
    # KA: the official DingCallbackCrypto3.py self-test (tests/vectors), a check_url event.
    ka = wechat_case("dingtalk-python-check-url")
    assert ka.receive_id is not None
    adapter = make_adapter(app_key=ka.receive_id, token=ka.token, aes_key=ka.encoding_aes_key)
    query = {"msg_signature": ka.msg_signature, "timeStamp": ka.timestamp, "nonce": ka.nonce}
    request = WebhookRequest("POST", query, {}, json.dumps({"encrypt": ka.encrypted}).encode())
    result = adapter.handle(request, now=int(ka.timestamp) / 1000)
    assert result.status == 200
    assert result.message is not None
    assert result.message.event == "check_url"


# --- configuration and helpers ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{"app_key": ""}, {"app_secret": ""}, {"token": ""}, {"aes_key": ""}, {"aes_key": "short"}],
)
def test_bad_configuration_is_a_config_error(overrides: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        make_adapter(**overrides)


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("## 退货流程\n1. 申请", "退货流程"),
        ("**您好**，七天内可以无理由退货。", "您好，七天内可以无理由退货。"),
        ("一" * 30, "一" * 19 + "…"),
        ("\n\n", "回复"),
    ],
)
def test_markdown_title(text: str, title: str) -> None:
    assert markdown_title(text) == title


def test_split_keeps_markdown_and_respects_the_byte_cap() -> None:
    adapter = make_adapter()
    assert adapter.split("**粗体** 和 [链接](https://x.y)") == ["**粗体** 和 [链接](https://x.y)"]
    parts = adapter.split("字" * 10000)
    assert len(parts) == 2
    assert all(len(p.encode()) <= 20000 for p in parts)


# --- a recorded payload -----------------------------------------------------------------------


def test_official_doc_sample_body_is_parsed() -> None:
    # tests/payloads/dingtalk/README.md: the "HTTP Body" sample of the official doc page.
    path = Path(__file__).resolve().parents[2] / "payloads" / "dingtalk" / "robot_group_text.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    created_ms = data["createAt"]
    msg = (
        make_adapter()
        .handle(robot_request(data, timestamp_ms=created_ms), now=created_ms / 1000)
        .message
    )
    assert msg is not None
    assert (msg.event_id, msg.text, msg.is_group) == ("msg0xxxxx", "你好", True)
    assert (msg.conversation_id, msg.sender_id) == ("xxx", "user123")
    assert (
        msg.route["sessionWebhook"] == "https://oapi.dingtalk.com/robot/sendBySession?session=xxxxx"
    )
    assert msg.route["sessionWebhookExpiredTime"] == "1613635652738"
    # The doc body has no robotCode: the configured one (the AppKey) is used.
    assert msg.route["robotCode"] == APP_KEY


def test_session_webhook_on_a_foreign_host_is_not_trusted() -> None:
    """The sign covers only the timestamp: a forged body must not redirect our replies."""
    forged = body(session_webhook="https://evil.example/robot/sendBySession?session=abc")
    msg = make_adapter().handle(robot_request(forged), now=NOW).message
    assert msg is not None
    assert msg.route["sessionWebhook"] == ""
