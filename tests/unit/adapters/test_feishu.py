"""FeishuAdapter.handle: URL challenge, events (2.0 and 1.0), mentions, and every refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.base import WebhookRequest
from adapters.feishu import crypto as feishu_crypto
from adapters.feishu import simulate as feishu_simulate
from adapters.feishu.adapter import FeishuAdapter, post_to_text, reply_uuid
from adapters.feishu.events import BotIdentityUnknownError, quoted
from bot.domain import Attachment, Content, MessageKind, Platform
from bot.errors import ConfigError, DecryptError, PayloadError, SignatureError, StaleRequestError

APP_ID = "cli_test_app"
TOKEN = "verification-token"
KEY = "encrypt key"
BOT = "ou_bot_self"
NOW = 1_700_000_000
IV = bytes(range(16))


def make_adapter(**overrides: Any) -> FeishuAdapter:
    config: dict[str, Any] = {
        "app_id": APP_ID,
        "app_secret": "secret",
        "verification_token": TOKEN,
        "encrypt_key": KEY,
        "api_base": "http://127.0.0.1:9",
        "tokens": None,
        "app": "support",
        "bot_open_id": BOT,
    }
    return FeishuAdapter(**{**config, **overrides})


def request(headers: dict[str, str], body: bytes, method: str = "POST") -> WebhookRequest:
    return WebhookRequest(
        method=method, query={}, headers={k.lower(): v for k, v in headers.items()}, body=body
    )


def sealed(payload: dict[str, Any], *, key: str = KEY, timestamp: int = NOW) -> WebhookRequest:
    headers, body = feishu_simulate.seal(
        payload, encrypt_key=key, timestamp=str(timestamp), nonce="nonce1", iv=IV
    )
    return request(headers, body)


def message_event(text: str, **kw: Any) -> dict[str, Any]:
    token = kw.pop("token", TOKEN)
    event = feishu_simulate.text_event(
        text,
        user_open_id=kw.pop("user", "ou_user"),
        message_id=kw.pop("message_id", "om_1"),
        chat_id=kw.pop("chat_id", "oc_chat"),
        create_time_ms=NOW * 1000,
        bot_open_id=BOT,
        **kw,
    )
    return feishu_simulate.envelope(
        "im.message.receive_v1",
        event,
        app_id=APP_ID,
        verification_token=token,
        event_id="ev_1",
        create_time_ms=NOW * 1000,
    )


def mention(key: str, open_id: str, name: str) -> dict[str, Any]:
    return {"key": key, "id": {"open_id": open_id, "union_id": "", "user_id": ""}, "name": name}


# --- URL verification ----------------------------------------------------------------------


def test_url_verification_plain() -> None:
    adapter = make_adapter(encrypt_key="")
    headers, body = feishu_simulate.build_verification(
        "ch-123", verification_token=TOKEN, encrypt_key="", timestamp="", nonce="", iv=IV
    )
    result = adapter.handle(request(headers, body), now=NOW)
    assert (result.status, result.content_type) == (200, "application/json")
    assert json.loads(result.body) == {"challenge": "ch-123"}
    assert result.message is None


@pytest.mark.parametrize("signed", [False, True])
def test_url_verification_encrypted_with_or_without_signature(signed: bool) -> None:
    headers, body = feishu_simulate.build_verification(
        "ch-456",
        verification_token=TOKEN,
        encrypt_key=KEY,
        timestamp=str(NOW),
        nonce="n",
        iv=IV,
        signed=signed,
    )
    assert "encrypt" in json.loads(body)
    result = make_adapter().handle(request(headers, body), now=NOW)
    assert json.loads(result.body) == {"challenge": "ch-456"}


def test_url_verification_with_wrong_token_is_401() -> None:
    headers, body = feishu_simulate.build_verification(
        "c", verification_token="wrong", encrypt_key=KEY, timestamp="", nonce="", iv=IV
    )
    with pytest.raises(SignatureError) as info:
        make_adapter().handle(request(headers, body), now=NOW)
    assert info.value.status == 401


# --- refusals ------------------------------------------------------------------------------


def test_event_with_wrong_token_is_401() -> None:
    with pytest.raises(SignatureError, match="token"):
        make_adapter().handle(sealed(message_event("hi", token="nope")), now=NOW)


def test_bad_signature_is_401() -> None:
    req = sealed(message_event("hi"))
    headers = {**req.headers, "x-lark-signature": "0" * 64}
    with pytest.raises(SignatureError) as info:
        make_adapter().handle(request(headers, req.body), now=NOW)
    assert info.value.status == 401


def test_tampered_body_is_401() -> None:
    req = sealed(message_event("hi"))
    body = req.body.replace(b'"}', b'A"}')
    with pytest.raises(SignatureError):
        make_adapter().handle(request(dict(req.headers), body), now=NOW)


def test_stale_timestamp_is_401() -> None:
    with pytest.raises(StaleRequestError) as info:
        make_adapter().handle(sealed(message_event("hi"), timestamp=NOW - 301), now=NOW)
    assert info.value.status == 401


def test_encrypted_event_without_signature_is_401() -> None:
    req = sealed(message_event("hi"))
    with pytest.raises(SignatureError):
        make_adapter().handle(request({}, req.body), now=NOW)


def test_plain_event_when_a_key_is_set_needs_a_signature() -> None:
    body = json.dumps(message_event("hi")).encode()
    with pytest.raises(SignatureError):
        make_adapter().handle(request({}, body), now=NOW)


def test_encrypted_with_another_key_is_refused() -> None:
    payload = message_event("hi")
    headers, body = feishu_simulate.seal(
        payload, encrypt_key="other", timestamp=str(NOW), nonce="n", iv=IV
    )
    with pytest.raises(SignatureError):
        make_adapter().handle(request(headers, body), now=NOW)
    # Signed with our key but sealed with another: the decryption check catches it.
    enc = feishu_crypto.encrypt(json.dumps(payload).encode(), "other", IV)
    body = json.dumps({"encrypt": enc}).encode()
    sig = feishu_crypto.signature(str(NOW), "n", KEY, body)
    headers = {
        "X-Lark-Signature": sig,
        "X-Lark-Request-Timestamp": str(NOW),
        "X-Lark-Request-Nonce": "n",
    }
    with pytest.raises((DecryptError, PayloadError)):
        make_adapter().handle(request(headers, body), now=NOW)


@pytest.mark.parametrize("body", [b"<xml/>", b"", b"[1, 2]", b"\xff\xfe"])
def test_non_json_is_400(body: bytes) -> None:
    with pytest.raises(PayloadError) as info:
        make_adapter().handle(request({}, body), now=NOW)
    assert info.value.status == 400


def test_get_is_refused() -> None:
    with pytest.raises(PayloadError):
        make_adapter().handle(request({}, b"", method="GET"), now=NOW)


def test_missing_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="verification_token"):
        make_adapter(verification_token="")


# --- messages ------------------------------------------------------------------------------


def test_p2p_text_becomes_a_message() -> None:
    result = make_adapter().handle(sealed(message_event("怎么退货")), now=NOW)
    assert (result.status, json.loads(result.body)) == (200, {})
    msg = result.message
    assert msg is not None
    assert (msg.platform, msg.app, msg.kind) == (Platform.FEISHU, "support", MessageKind.TEXT)
    assert (msg.event_id, msg.conversation_id, msg.sender_id) == ("om_1", "oc_chat", "ou_user")
    assert (msg.text, msg.is_group) == ("怎么退货", False)
    assert msg.sent_at.timestamp() == NOW
    assert msg.route == {
        "message_id": "om_1",
        "chat_id": "oc_chat",
        "chat_type": "p2p",
        "event_id": "ev_1",
    }


def test_plaintext_mode_without_encrypt_key() -> None:
    body = json.dumps(message_event("hello")).encode()
    result = make_adapter(encrypt_key="").handle(request({}, body), now=NOW)
    assert result.message is not None
    assert result.message.text == "hello"


def test_group_message_mentioning_the_bot_is_answered_without_the_mention() -> None:
    payload = message_event("怎么退货", group=True, mention_bot=True)
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.is_group, msg.route["chat_type"]) == ("怎么退货", True, "group")


def test_other_mentions_are_replaced_by_names() -> None:
    others = [mention("@_user_1", "ou_li", "李四")]
    payload = message_event("@_user_1 的订单到哪了", group=True, mention_bot=True, mentions=others)
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert msg.text == "@李四 的订单到哪了"


def test_group_message_mentioning_someone_else_is_ignored() -> None:
    others = [mention("@_user_1", "ou_li", "李四")]
    payload = message_event("@_user_1 hi", group=True, mentions=others)
    result = make_adapter().handle(sealed(payload), now=NOW)
    assert (result.status, json.loads(result.body), result.message) == (200, {}, None)


def test_group_message_at_all_is_ignored() -> None:
    at_all = [{"key": "@_all", "id": {}, "name": "所有人"}]
    payload = message_event("@_all 开会", group=True, mentions=at_all)
    for adapter in (make_adapter(), make_adapter(bot_open_id="")):
        assert adapter.handle(sealed(payload), now=NOW).message is None


def test_group_message_without_mention_is_ignored() -> None:
    payload = message_event("大家好", group=True)
    assert make_adapter().handle(sealed(payload), now=NOW).message is None


def test_unknown_bot_id_defers_group_messages_with_mentions_only() -> None:
    adapter = make_adapter(bot_open_id="")
    payload = message_event("在吗", group=True, mention_bot=True)
    # Whose mention it is cannot be told: 503, so Feishu delivers it again later.
    with pytest.raises(BotIdentityUnknownError) as caught:
        adapter.handle(sealed(payload), now=NOW)
    assert caught.value.status == 503
    # No mention at all: not for the bot whatever its id; p2p: always for the bot.
    assert adapter.handle(sealed(message_event("大家好", group=True)), now=NOW).message is None
    assert adapter.handle(sealed(message_event("你好")), now=NOW).message is not None


def test_messages_from_apps_are_ignored() -> None:
    payload = message_event("echo")
    payload["event"]["sender"]["sender_type"] = "app"
    assert make_adapter().handle(sealed(payload), now=NOW).message is None


def test_image_message_is_a_placeholder_with_the_picture_to_fetch() -> None:
    payload = message_event("x")
    payload["event"]["message"].update(message_type="image", content='{"image_key":"img_1"}')
    message = make_adapter().handle(sealed(payload), now=NOW).message
    assert message is not None
    assert (message.text, message.content, message.placeholder) == ("[图片]", Content.IMAGE, True)
    assert message.attachments == (Attachment(Content.IMAGE, "img_1"),)


@pytest.mark.parametrize(
    ("message_type", "content", "text", "kind"),
    [
        ("audio", {"file_key": "f", "duration": 2000}, "[语音]", Content.VOICE),
        (
            "media",
            {"file_key": "f", "image_key": "i", "file_name": "a.mp4"},
            "[视频] a.mp4",
            Content.VIDEO,
        ),
        ("file", {"file_key": "f", "file_name": "合同.pdf"}, "[文件] 合同.pdf", Content.FILE),
        ("sticker", {"file_key": "f"}, "[表情]", Content.STICKER),
        (
            "location",
            {"name": "公司", "longitude": "1", "latitude": "2"},
            "[位置] 公司",
            Content.LOCATION,
        ),
        ("share_chat", {"chat_id": "oc_1"}, "[名片]", Content.CARD),
        ("merge_forward", {}, "[消息]", Content.OTHER),
    ],
)
def test_every_other_type_is_a_placeholder(
    message_type: str, content: dict, text: str, kind: Content
) -> None:
    payload = message_event("x")
    payload["event"]["message"].update(message_type=message_type, content=json.dumps(content))
    message = make_adapter().handle(sealed(payload), now=NOW).message
    assert message is not None
    assert (message.text, message.content, message.placeholder) == (text, kind, True)
    # Only pictures, files and voice are fetched; a file keeps its name (its type is read
    # from bytes).
    fetched = {
        Content.FILE: (Attachment(Content.FILE, "f", name="合同.pdf"),),
        Content.VOICE: (Attachment(Content.VOICE, "f"),),
    }.get(kind, ())
    assert message.attachments == fetched


def test_post_of_pictures_only_is_an_image_placeholder() -> None:
    content = {
        "title": "",
        "content": [[{"tag": "img", "image_key": "img_a"}], [{"tag": "img", "image_key": "img_b"}]],
    }
    payload = message_event("x")
    payload["event"]["message"].update(message_type="post", content=json.dumps(content))
    message = make_adapter().handle(sealed(payload), now=NOW).message
    assert message is not None
    assert (message.text, message.content, message.placeholder) == ("[图片]", Content.IMAGE, True)
    assert [a.ref for a in message.attachments] == ["img_a", "img_b"]


def test_post_rich_text_becomes_plain_text() -> None:
    content = {
        "title": "退货",
        "content": [
            [
                {"tag": "at", "user_id": "@_user_1", "user_name": "客服机器人"},
                {"tag": "text", "text": " 我想退 "},
                {"tag": "a", "text": "这个订单", "href": "https://shop.example/o/1"},
            ],
            [{"tag": "text", "text": "谢谢"}, {"tag": "emotion", "emoji_type": "SMILE"}],
            [{"tag": "img", "image_key": "img_x"}],
        ],
    }
    payload = message_event("x")
    payload["event"]["message"].update(
        message_type="post",
        content=json.dumps(content, ensure_ascii=False),
        mentions=[mention("@_user_1", BOT, "客服机器人")],
    )
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert msg.text == "退货\n我想退 这个订单 (https://shop.example/o/1)\n谢谢[SMILE]"


def test_post_in_its_localised_form() -> None:
    names = {"@_user_1": "@王五"}
    content = {"zh_cn": {"title": "", "content": [[{"tag": "at", "user_id": "@_user_1"}]]}}
    assert post_to_text(content, names) == "@王五"


def test_bot_added_to_a_group_is_an_event() -> None:
    payload = feishu_simulate.envelope(
        "im.chat.member.bot.added_v1",
        {"chat_id": "oc_group", "operator_id": {"open_id": "ou_admin"}, "name": "售后群"},
        app_id=APP_ID,
        verification_token=TOKEN,
        event_id="ev_added",
        create_time_ms=NOW * 1000,
    )
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert (msg.kind, msg.event_id, msg.conversation_id, msg.sender_id, msg.is_group) == (
        MessageKind.EVENT,
        "ev_added",
        "oc_group",
        "ou_admin",
        True,
    )
    assert msg.event == "im.chat.member.bot.added_v1"
    assert "message_id" not in msg.route


def test_p2p_chat_entered_is_an_event() -> None:
    payload = feishu_simulate.envelope(
        "im.chat.access_event.bot_p2p_chat_entered_v1",
        {"chat_id": "oc_p2p", "operator_id": {"open_id": "ou_user"}},
        app_id=APP_ID,
        verification_token=TOKEN,
        event_id="ev_enter",
        create_time_ms=NOW * 1000,
    )
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert (msg.kind, msg.is_group, msg.route["chat_type"]) == (MessageKind.EVENT, False, "p2p")


def test_unknown_event_is_acknowledged_and_ignored() -> None:
    payload = feishu_simulate.envelope(
        "im.message.reaction.created_v1",
        {},
        app_id=APP_ID,
        verification_token=TOKEN,
        event_id="ev_x",
        create_time_ms=NOW * 1000,
    )
    result = make_adapter().handle(sealed(payload), now=NOW)
    assert (result.status, json.loads(result.body), result.message) == (200, {}, None)


def test_v1_envelope_message() -> None:
    payload = {
        "uuid": "uuid-v1",
        "token": TOKEN,
        "ts": f"{NOW}.123",
        "type": "event_callback",
        "event": {
            "type": "message",
            "app_id": APP_ID,
            "open_chat_id": "oc_v1",
            "chat_type": "group",
            "msg_type": "text",
            "open_id": "ou_v1",
            "open_message_id": "om_v1",
            "is_mention": True,
            "text": '<at open_id="ou_bot_self">@bot</at> 发票',
            "text_without_at_bot": " 发票",
        },
    }
    msg = make_adapter().handle(sealed(payload), now=NOW).message
    assert msg is not None
    assert (msg.event_id, msg.conversation_id, msg.sender_id, msg.text, msg.is_group) == (
        "om_v1",
        "oc_v1",
        "ou_v1",
        "发票",
        True,
    )
    assert msg.route["event_id"] == "uuid-v1"


def test_v1_envelope_with_wrong_token_is_401() -> None:
    payload = {"uuid": "u", "token": "bad", "type": "event_callback", "event": {"type": "x"}}
    with pytest.raises(SignatureError):
        make_adapter().handle(sealed(payload), now=NOW)


def test_neither_schema_is_400() -> None:
    with pytest.raises(PayloadError):
        make_adapter().handle(sealed({"hello": "world"}), now=NOW)


# --- outbound helpers ---------------------------------------------------------------------


def test_split_keeps_markdown_for_post_and_cuts_plain_text_at_30k() -> None:
    assert make_adapter().split("**您好**，请看 [订单](https://x/o)") == [
        "**您好**，请看 [订单](https://x/o)"
    ]
    parts = make_adapter().split("字" * 25_000)
    assert len(parts) == 3
    assert all(len(p.encode()) <= 30_000 for p in parts)
    marked = make_adapter().split("**标题**\n\n" + "字" * 10_000)
    assert len(marked) == 3
    assert all(len(p.encode()) <= 12_000 for p in marked)


def test_reply_uuid_is_stable_short_and_distinct() -> None:
    assert reply_uuid("om_1", "a") == reply_uuid("om_1", "a")
    assert reply_uuid("om_1", "a") != reply_uuid("om_1", "b")
    assert reply_uuid("om_1", "a") != reply_uuid("om_2", "a")
    assert len(reply_uuid("om_1", "a")) <= 50


def test_topic_group_counts_as_a_group() -> None:
    payload = message_event("hi", group=True)
    payload["event"]["message"]["chat_type"] = "topic_group"
    assert make_adapter().handle(sealed(payload), now=NOW).message is None


# --- long-connection events ---------------------------------------------------------------


def test_long_connection_event_needs_no_signature_or_token() -> None:
    payload = message_event("长连接", token="")
    msg = make_adapter(encrypt_key="").parse_event(json.dumps(payload).encode())
    assert msg is not None
    assert (msg.text, msg.event_id) == ("长连接", "om_1")


def test_long_connection_event_may_be_encrypted() -> None:
    plain = json.dumps(message_event("加密的")).encode()
    sealed_body = json.dumps({"encrypt": feishu_crypto.encrypt(plain, KEY, iv=IV)}).encode()
    msg = make_adapter().parse_event(sealed_body)
    assert msg is not None
    assert msg.text == "加密的"


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", json.dumps({"type": "event_callback"}).encode()]
)
def test_long_connection_event_that_is_not_schema_2_is_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        make_adapter().parse_event(body)


def test_a_reply_names_the_message_it_quotes_for_the_worker() -> None:
    payload = message_event("这个呢")
    payload["event"]["message"].update(parent_id="om_earlier", root_id="om_earlier")
    message = make_adapter().handle(sealed(payload), now=NOW).message
    assert message is not None
    assert (message.text, message.route["parent_id"]) == ("这个呢", "om_earlier")
    plain = make_adapter().handle(sealed(message_event("你好")), now=NOW).message
    assert plain is not None
    assert "parent_id" not in plain.route


@pytest.mark.parametrize(
    ("msg_type", "content", "text"),
    [
        ("text", '{"text":"@_user_1 订单 123 什么时候发货？"}', "订单 123 什么时候发货？"),
        (
            "post",
            '{"title":"退款","content":[[{"tag":"text","text":"多久到账"}]]}',
            "退款\n多久到账",
        ),
        ("image", '{"image_key":"img_1"}', "[图片]"),
        ("interactive", "{}", "[消息]"),
        ("text", "not json", ""),
    ],
)
def test_quoted_message_text(msg_type: str, content: str, text: str) -> None:
    assert quoted(msg_type, content) == text
