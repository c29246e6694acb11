"""WeComKfAdapter: the callback, parse_sync_msg on a recorded-shape payload, item → message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.base import WebhookRequest
from adapters.wecom import simulate as wecom_simulate
from adapters.wecom_kf import WeComKfAdapter
from adapters.wecom_kf import simulate as wecom_kf_simulate
from adapters.wecom_kf.parse import KfItem, parse_sync_msg
from adapters.xml import build_xml
from bot.domain import Attachment, Content, MessageKind, Platform
from bot.errors import ConfigError, DecryptError, PayloadError, SignatureError, StaleRequestError

CORP = "ww-kf-corp"
TOKEN = "kf-token"
KEY_TEXT = ("wecomKfUnitTestKey" * 3)[:42] + "7"  # ours; '7': non-zero trailing bits
NOW = 1_700_000_000
PREFIX = b"0123456789abcdef"
OPEN_KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
PAYLOADS = Path(__file__).resolve().parents[2] / "payloads" / "wecom_kf"


def make_adapter(**overrides: Any) -> WeComKfAdapter:
    config: dict[str, Any] = {
        "corp_id": CORP,
        "token": TOKEN,
        "aes_key": KEY_TEXT,
        "secret": "kf-secret",
        "api_base": "http://127.0.0.1:9",
        "tokens": None,
        "app": "shop",
    }
    return WeComKfAdapter(**{**config, **overrides})


SYNC_TOKEN = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"  # the doc sample's shape


def callback(
    sync_token: str = SYNC_TOKEN,
    *,
    corp_id: str = CORP,
    timestamp: int = NOW,
) -> tuple[dict[str, str], bytes]:
    return wecom_kf_simulate.build_callback(
        corp_id=corp_id,
        token=TOKEN,
        aes_key=KEY_TEXT,
        sync_token=sync_token,
        open_kfid=OPEN_KFID,
        create_time=timestamp - 1,
        timestamp=str(timestamp),
        nonce="nonce-7",
        random_prefix=PREFIX,
    )


def post(query: dict[str, str], body: bytes, *, now: float = NOW) -> Any:
    return make_adapter().handle(
        WebhookRequest(method="POST", query=query, headers={}, body=body), now=now
    )


def test_callback_becomes_a_sync_trigger_with_an_empty_answer() -> None:
    result = post(*callback())
    assert (result.status, result.body) == (200, b"")
    msg = result.message
    assert msg is not None
    assert msg.platform is Platform.WECOM_KF
    assert msg.app == "shop"
    assert (msg.kind, msg.event) == (MessageKind.PULL, "kf_msg_or_event")
    assert msg.route == {"sync_token": SYNC_TOKEN, "open_kfid": OPEN_KFID}
    assert msg.conversation_id == OPEN_KFID


def test_a_retried_callback_has_the_same_event_id_and_a_new_one_does_not() -> None:
    first = post(*callback("ENCtoken-A")).message
    retry = post(*callback("ENCtoken-A", timestamp=NOW + 5), now=NOW + 5).message
    other = post(*callback("ENCtoken-B")).message
    assert first is not None
    assert retry is not None
    assert other is not None
    assert first.event_id == retry.event_id
    assert first.event_id != other.event_id
    assert "ENCtoken" not in first.event_id  # the token itself stays out of Redis keys


def test_url_verification_answers_the_bare_plaintext() -> None:
    query = wecom_simulate.build_verification(
        "1234567890",
        corp_id=CORP,
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp=str(NOW),
        nonce="n",
        random_prefix=PREFIX,
    )
    result = make_adapter().handle(
        WebhookRequest(method="GET", query=query, headers={}, body=b""), now=NOW
    )
    assert (result.status, result.body, result.message) == (200, b"1234567890", None)


def test_other_events_are_answered_and_ignored() -> None:
    fields: dict[str, str | int] = {
        "ToUserName": CORP,
        "CreateTime": NOW,
        "MsgType": "event",
        "Event": "other",
    }
    query, body = wecom_simulate.seal(
        build_xml(fields),
        corp_id=CORP,
        agent_id="",
        token=TOKEN,
        aes_key=KEY_TEXT,
        timestamp=str(NOW),
        nonce="n",
        random_prefix=PREFIX,
    )
    result = post(query, body)
    assert (result.status, result.message) == (200, None)


def test_bad_requests_are_refused() -> None:
    query, body = callback()
    with pytest.raises(SignatureError):
        post({**query, "msg_signature": "0" * 40}, body)
    with pytest.raises(StaleRequestError):
        post(query, body, now=NOW + 3600)
    with pytest.raises(DecryptError):
        post(*callback(corp_id="ww-someone-else"))
    with pytest.raises(PayloadError):
        post({k: v for k, v in query.items() if k != "nonce"}, body)
    with pytest.raises(PayloadError):
        post(query, b"<!DOCTYPE x [<!ENTITY a 'b'>]><xml><Encrypt>&a;</Encrypt></xml>")


def test_missing_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="secret"):
        make_adapter(secret="")


# --- the pull --------------------------------------------------------------------------------


def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / "sync_msg.json").read_text(encoding="utf-8"))
    return data


def test_parse_sync_msg_reads_every_entry_and_the_cursor() -> None:
    items, next_cursor, has_more = parse_sync_msg(recorded())
    assert (next_cursor, has_more) == ("4gw7MepFLfgF2VC5npN", True)
    assert [(i.origin, i.msgtype, i.event_type) for i in items] == [
        (3, "text", ""),
        (3, "image", ""),
        (5, "text", ""),
        (4, "event", "enter_session"),
        (4, "event", "session_status_change"),
    ]
    assert items[0].content == "你好，我想退货"
    # Events carry the customer inside `event`.
    assert items[3].external_userid == "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
    assert items[3].open_kfid == OPEN_KFID
    assert items[3].welcome_code == "aBcDeFgHiJkLmNoPqRsTuVwXyZ"


def test_parse_sync_msg_on_the_last_page_and_junk() -> None:
    page = parse_sync_msg({"errcode": 0, "next_cursor": "c9", "has_more": 0, "msg_list": []})
    assert page == ([], "c9", False)
    page = parse_sync_msg({"msg_list": [{"no": "msgid"}, "junk"], "has_more": 1})
    assert page.items == []
    assert page.has_more
    with pytest.raises(PayloadError):
        parse_sync_msg({"msg_list": "nope"})


def test_only_customer_messages_and_enter_session_become_messages() -> None:
    adapter = make_adapter()
    messages = [adapter.inbound(item) for item in parse_sync_msg(recorded()).items]
    text, image, servicer, enter, status = messages
    assert (servicer, status) == (None, None)
    # A customer's image is answered too: a placeholder flagged for the polite fixed reply.
    assert image is not None
    assert (image.text, image.content, image.placeholder) == ("[图片]", Content.IMAGE, True)
    # Its media_id is fetched through media/get (for a vision model, and the person taking over).
    media_id = "2iSLeVyqzk4eX0IB5kTi9Ljfa2rt9dwfq5WKRQ4Nvvgw"
    assert image.attachments == (Attachment(Content.IMAGE, media_id),)
    assert text is not None
    assert text.attachments == ()
    assert enter is not None
    assert text.kind is MessageKind.TEXT
    assert (text.event_id, text.text) == ("from_msgid_4622416642169452483", "你好，我想退货")
    assert text.conversation_id == text.sender_id == "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
    assert text.route == {"open_kfid": OPEN_KFID, "external_userid": text.sender_id}
    assert text.sent_at.timestamp() == 1615478585
    assert enter.kind is MessageKind.EVENT
    assert enter.event_id == "event_msgid_enter"
    assert enter.event == "enter_session"
    assert enter.route["welcome_code"] == "aBcDeFgHiJkLmNoPqRsTuVwXyZ"
    assert enter.route["welcome_for"] == enter.event_id


def test_an_item_without_a_customer_is_skipped() -> None:
    item = KfItem(
        msgid="m1", open_kfid=OPEN_KFID, external_userid="", send_time=0, origin=3, msgtype="text"
    )
    assert make_adapter().inbound(item) is None


def test_split_respects_the_byte_limit() -> None:
    parts = make_adapter().split("退" * 1500)
    assert len(parts) == 3
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
