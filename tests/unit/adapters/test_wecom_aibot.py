"""WeCom 智能机器人 webhook mode (docs/protocols/wecom-aibot.md): the JSON envelope with an
empty receive id, the callbacks' parsing, and the adapter's answers. Pure: no Redis here."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.base import WebhookRequest
from adapters.wechat import crypto
from adapters.wecom_aibot import WeComAiBotAdapter, envelope, simulate
from adapters.wecom_aibot.adapter import MAX_CONTENT_BYTES, clip, stream_id_of
from bot.domain import Content, MessageKind, Platform
from bot.errors import DecryptError, PayloadError, SignatureError, StaleRequestError

TOKEN = "aibotToken"
KEY_TEXT = ("aibotUnitTestKey0" * 3)[:43]
KEY = crypto.decode_aes_key(KEY_TEXT)
NOW = 1_760_000_000
PREFIX = b"0123456789abcdef"


def _independent_seal(plaintext: bytes, receive_id: bytes) -> str:
    """The scheme written out again from the doc, without our crypto module."""
    full = PREFIX + struct.pack(">I", len(plaintext)) + plaintext + receive_id
    pad = 32 - len(full) % 32
    enc = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).encryptor()
    return base64.b64encode(enc.update(full + bytes([pad]) * pad) + enc.finalize()).decode()


def adapter(**kwargs) -> WeComAiBotAdapter:
    return WeComAiBotAdapter(
        token=TOKEN,
        aes_key=KEY_TEXT,
        welcome_text="欢迎",
        random_bytes=lambda n: PREFIX[:n],
        **kwargs,
    )


def post(data: dict, *, now: int = NOW, token: str = TOKEN) -> WebhookRequest:
    query, body = simulate.build_post(
        data,
        token=token,
        aes_key=KEY_TEXT,
        timestamp=str(now),
        nonce="nonce1",
        random_prefix=PREFIX,
    )
    return WebhookRequest("POST", query, {}, body)


def reply_of(body: bytes) -> dict:
    return simulate.open_reply(body, token=TOKEN, aes_key=KEY_TEXT)


# --- the envelope: known answers ------------------------------------------------------------


def test_reply_matches_the_scheme_with_an_empty_receive_id() -> None:
    message = {"msgtype": "stream", "stream": {"id": "s1", "finish": False, "content": ""}}
    body = envelope.seal_reply(
        message, token=TOKEN, aes_key=KEY, timestamp="1760000000", nonce="n1", random_prefix=PREFIX
    )
    sealed = json.loads(body)
    plaintext = json.dumps(message, separators=(",", ":")).encode()
    # Derived known answer: the same bytes by an independent implementation of the doc.
    assert sealed["encrypt"] == _independent_seal(plaintext, b"")
    joined = "".join(sorted([TOKEN, "1760000000", "n1", sealed["encrypt"]])).encode()
    assert sealed["msgsignature"] == hashlib.sha1(joined).hexdigest()  # noqa: S324 - protocol
    assert (sealed["timestamp"], sealed["nonce"]) == ("1760000000", "n1")
    assert envelope.open_reply(body, token=TOKEN, aes_key=KEY) == message


def test_a_callback_sealed_for_a_corp_is_refused() -> None:
    # The WeCom app's receive id is the CorpID; the bot's is "": a mix-up must not decrypt.
    encrypted = _independent_seal(b'{"msgid":"1"}', b"wwcorp")
    query = {
        "msg_signature": crypto.signature(TOKEN, str(NOW), "n", encrypted),
        "timestamp": str(NOW),
        "nonce": "n",
    }
    body = json.dumps({"encrypt": encrypted}).encode()
    with pytest.raises(DecryptError, match="receive id"):
        adapter().handle(WebhookRequest("POST", query, {}, body), now=NOW)


def test_url_check_answers_the_plain_echo() -> None:
    query = simulate.build_verification(
        "echo-123",
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp=str(NOW),
        nonce="n",
        random_prefix=PREFIX,
    )
    result = adapter().handle(WebhookRequest("GET", query, {}, b""), now=NOW)
    assert (result.status, result.body) == (200, b"echo-123")


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda q, b: ({**q, "msg_signature": "0" * 40}, b), SignatureError),
        (lambda q, b: (q, b'{"encrypt": "not base64!!"}'), SignatureError),
        (lambda q, b: (q, b"[1, 2]"), PayloadError),
        (lambda q, b: (q, b"{not json"), PayloadError),
        (lambda q, b: (q, b'{"encrypt": 5}'), PayloadError),
        (lambda q, b: ({k: v for k, v in q.items() if k != "nonce"}, b), PayloadError),
    ],
)
def test_hostile_requests_are_refused(mutate, error) -> None:
    request = post(simulate.text_message("hi", msgid="m1"))
    query, body = mutate(dict(request.query), request.body)
    with pytest.raises(error):
        adapter().handle(WebhookRequest("POST", query, {}, body), now=NOW)


def test_bad_base64_with_a_valid_signature_is_a_decrypt_error() -> None:
    encrypted = "%%%not-base64%%%"
    query = {
        "msg_signature": crypto.signature(TOKEN, str(NOW), "n", encrypted),
        "timestamp": str(NOW),
        "nonce": "n",
    }
    body = json.dumps({"encrypt": encrypted}).encode()
    with pytest.raises(DecryptError, match="base64"):
        adapter().handle(WebhookRequest("POST", query, {}, body), now=NOW)


def test_stale_timestamp_is_refused() -> None:
    with pytest.raises(StaleRequestError):
        adapter().handle(post(simulate.text_message("hi", msgid="m1"), now=NOW - 3600), now=NOW)


# --- messages -------------------------------------------------------------------------------


def test_text_message_is_queued_and_the_stream_opens() -> None:
    data = simulate.text_message("怎么退货", msgid="m1", response_url="https://x/resp?code=1")
    result = adapter().handle(post(data), now=NOW)
    msg = result.message
    assert msg is not None
    assert (msg.platform, msg.event_id, msg.conversation_id, msg.sender_id) == (
        Platform.WECOM_AIBOT,
        "m1",
        "zhangsan",
        "zhangsan",
    )
    assert (msg.text, msg.is_group, msg.content) == ("怎么退货", False, Content.TEXT)
    sid = stream_id_of("default", "m1")
    assert msg.route["stream_id"] == sid
    assert msg.route["response_url"] == "https://x/resp?code=1"
    assert int(msg.route["deadline"]) == NOW + 345
    assert result.content_type == "application/json"
    assert reply_of(result.body) == {
        "msgtype": "stream",
        "stream": {"id": sid, "finish": False, "content": "", "feedback": {"id": "m1"}},
    }
    # A platform retry of the same message names the same stream.
    again = adapter().handle(post(data), now=NOW + 5)
    assert reply_of(again.body)["stream"]["id"] == sid


def test_group_mention_is_taken_off_and_the_conversation_is_the_group() -> None:
    data = simulate.text_message(
        "@客服小助手 发票怎么开", msgid="g1", chatid="wrgroup", user="lisi"
    )
    msg = adapter().handle(post(data), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.conversation_id, msg.sender_id, msg.is_group) == (
        "发票怎么开",
        "wrgroup",
        "lisi",
        True,
    )


def test_quote_becomes_part_of_the_question() -> None:
    data = simulate.text_message("这个怎么退？", msgid="q1", quote="订单 A123 已签收")
    msg = adapter().handle(post(data), now=NOW).message
    assert msg is not None
    assert msg.text == "这个怎么退？\n（引用：订单 A123 已签收）"


def test_mixed_voice_image_and_file() -> None:
    mixed = simulate.text_message("", msgid="x1")
    del mixed["text"]
    mixed["msgtype"] = "mixed"
    mixed["mixed"] = {
        "msg_item": [
            {"msgtype": "text", "text": {"content": "这张图里的商品"}},
            {"msgtype": "image", "image": {"url": "https://x/img"}},
        ]
    }
    msg = adapter().handle(post(mixed), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.placeholder, msg.content) == (
        "这张图里的商品\n[图片]",
        False,
        Content.TEXT,
    )

    voice = {**mixed, "msgid": "x2", "msgtype": "voice", "voice": {"content": "我要退货"}}
    msg = adapter().handle(post(voice), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.placeholder, msg.content) == ("我要退货", False, Content.VOICE)

    image = {**mixed, "msgid": "x3", "msgtype": "image", "image": {"url": "https://x/img"}}
    msg = adapter().handle(post(image), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.placeholder, msg.content) == ("[图片]", True, Content.IMAGE)
    assert msg.question == ""

    file = {**mixed, "msgid": "x4", "msgtype": "file", "file": {"url": "https://x/f"}}
    msg = adapter().handle(post(file), now=NOW).message
    assert msg is not None
    assert (msg.text, msg.placeholder, msg.content) == ("[文件]", True, Content.FILE)


@pytest.mark.parametrize(
    "data",
    [
        {"msgtype": "text", "from": {"userid": "u"}},  # no msgid
        {"msgid": "m", "msgtype": "text"},  # no sender
        {
            "msgid": "m",
            "msgtype": "text",
            "from": {"userid": "u"},
            "chattype": "group",
        },  # no chatid
        {"msgid": "m", "msgtype": "text", "from": "u"},
        {"msgid": ["m"], "msgtype": "text", "from": {"userid": "u"}},
        {"msgid": "m", "msgtype": "mixed", "from": {"userid": "u"}, "mixed": {"msg_item": 3}},
        {"msgid": "m", "msgtype": "stream", "from": {"userid": "u"}, "stream": {}},
    ],
)
def test_malformed_callbacks_are_payload_errors(data: dict) -> None:
    with pytest.raises(PayloadError):
        adapter().handle(post(data), now=NOW)


def test_a_callback_for_another_bot_is_refused() -> None:
    data = simulate.text_message("hi", msgid="m1", bot_id="OTHER")
    with pytest.raises(PayloadError, match="another bot"):
        adapter(bot_id="AIBOT1").handle(post(data), now=NOW)


# --- refreshes and events --------------------------------------------------------------------


def test_refresh_is_marked_for_the_route_and_queues_nothing() -> None:
    result = adapter().handle(post(simulate.refresh("sid-1", msgid="r1")), now=NOW)
    assert (result.refresh, result.message, result.body) == ("sid-1", None, b"")


def test_enter_chat_is_answered_with_the_welcome_text() -> None:
    data = simulate.event("enter_chat", {}, msgid="e1", create_time=NOW)
    result = adapter().handle(post(data), now=NOW)
    assert result.message is None
    assert reply_of(result.body) == {"msgtype": "text", "text": {"content": "欢迎"}}


def test_feedback_event_is_a_notice_rating_the_answer() -> None:
    data = simulate.event(
        "feedback_event",
        {"id": "m1", "type": 2, "content": "不对", "inaccurate_reason_list": [2]},
        msgid="f1",
        create_time=NOW,
    )
    bot = adapter()
    msg = bot.handle(post(data), now=NOW).message
    assert msg is not None
    assert (msg.kind, msg.event, msg.event_key, msg.conversation_id) == (
        MessageKind.NOTICE,
        "feedback_event",
        "down",
        "event:zhangsan",
    )
    assert bot.rating(msg) == ("zhangsan", "m1", -1)
    bad = simulate.event("feedback_event", {"id": "m1", "type": 9}, msgid="f2", create_time=NOW)
    with pytest.raises(PayloadError):
        bot.handle(post(bad), now=NOW)


def test_template_card_event_is_ignored() -> None:
    data = simulate.event("template_card_event", {"event_key": "k"}, msgid="t1", create_time=NOW)
    result = adapter().handle(post(data), now=NOW)
    assert (result.status, result.body, result.message) == (200, b"", None)


# --- the content cap ------------------------------------------------------------------------


def test_long_answers_fit_the_content_cap_in_at_most_two_parts() -> None:
    text = ("退货须知第一条。" * 1000 + "\n\n") * 6  # about 144 KB
    parts = adapter().split(text)
    assert len(parts) == 2
    assert all(len(p.encode()) <= MAX_CONTENT_BYTES for p in parts)
    assert parts[1].endswith("…")
    assert adapter().split("短答") == ["短答"]
    assert clip("你好" * 10, 7) == "你好"


# --- payloads in the docs' shapes (tests/payloads/wecom_aibot/) -------------------------------

PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "wecom_aibot"


def payload(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "text", "content", "placeholder", "conversation", "group"),
    [
        (
            "group_text_quote.json",
            "这个订单能退吗\n（引用：订单 A1001 已签收）",
            Content.TEXT,
            False,
            "CHATID",
            True,
        ),
        ("mixed.json", "收到的商品是这样的\n[图片]", Content.TEXT, False, "USERID", False),
        ("voice.json", "我想把昨天的订单退掉", Content.VOICE, False, "USERID", False),
        ("image.json", "[图片]", Content.IMAGE, True, "USERID", False),
        ("file.json", "[文件]", Content.FILE, True, "USERID", False),
    ],
)
def test_documented_messages(
    name: str, text: str, content: Content, placeholder: bool, conversation: str, group: bool
) -> None:
    data = payload(name)
    msg = adapter().handle(post(data), now=NOW).message
    assert msg is not None
    assert (msg.event_id, msg.text, msg.content, msg.placeholder) == (
        data["msgid"],
        text,
        content,
        placeholder,
    )
    assert (msg.conversation_id, msg.sender_id, msg.is_group) == (conversation, "USERID", group)
    assert msg.route["response_url"] == data["response_url"]


def test_documented_refresh_and_events() -> None:
    bot = adapter()
    assert bot.handle(post(payload("stream_refresh.json")), now=NOW).refresh == "STREAMID"
    welcome = bot.handle(post(payload("enter_chat.json")), now=NOW)
    assert reply_of(welcome.body)["text"]["content"] == "欢迎"
    notice = bot.handle(post(payload("feedback_event.json")), now=NOW).message
    assert notice is not None
    assert bot.rating(notice) == ("CHATID", "CAIQ16HMjQYY/NGagIOAgAMgq4KM0AI=", -1)
    assert notice.text == "👎 没有说运费谁出"
    card = bot.handle(post(payload("template_card_event.json")), now=NOW)
    assert (card.message, card.body) == (None, b"")


def test_a_refresh_needs_only_its_stream_id() -> None:
    bare = {"msgid": "r9", "msgtype": "stream", "stream": {"id": "sid-9"}}
    assert adapter().handle(post(bare), now=NOW).refresh == "sid-9"
    with pytest.raises(PayloadError, match="another bot"):
        adapter(bot_id="AIBOT1").handle(post({**bare, "aibotid": "OTHER"}), now=NOW)


def test_a_type_the_bot_cannot_read_is_still_answered_in_both_modes() -> None:
    """A message type WeCom adds later opens a stream and gets the polite text, never silence."""
    from adapters.wecom_aibot.longconn import message_of
    from bot.pipeline.autoreply import unsupported_reply

    data = simulate.text_message("", msgid="new-1")
    del data["text"]
    data["msgtype"] = "location"
    data["location"] = {"latitude": 23.1, "longitude": 113.3}
    result = adapter().handle(post(data), now=NOW)
    assert reply_of(result.body)["msgtype"] == "stream"
    over_ws = message_of("default", "req-1", data, now=NOW)
    for msg in (result.message, over_ws):
        assert msg is not None
        assert (msg.text, msg.placeholder, msg.content) == ("[消息]", True, Content.OTHER)
    assert "这类消息" in unsupported_reply(Content.OTHER)
