"""DingTalk media and event helpers: what is fetched, from where, under which name, what is kept."""

from __future__ import annotations

import json

import pytest

from adapters.dingtalk import events as dingtalk_events
from adapters.dingtalk import media as dingtalk_media
from bot.domain import MessageKind

API = "http://127.0.0.1:8123"


@pytest.mark.parametrize(
    "url",
    [
        "https://download.dingtalk.com/temporary/media-file?x=1",
        "https://dingtalk.com/f",
        "https://static.dingtalk.com/media/abc.jpg",
        "http://127.0.0.1:8123/media/abc",  # the configured API (the fake, in tests)
    ],
)
def test_dingtalk_hosts_and_the_api_are_followed(url: str) -> None:
    assert dingtalk_media.allowed_url(url, api_base=API)


@pytest.mark.parametrize(
    "url",
    [
        "http://download.dingtalk.com/f",  # not https
        "https://dingtalk.com.evil.example/f",
        "https://evildingtalk.com/f",
        "https://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8124/media/abc",  # loopback, but not the API's port
        "https://127.0.0.1:8123/media/abc",  # the API's host, another scheme
        "https://user:pw@download.dingtalk.com/f",
        "file:///etc/passwd",
        "not a url",
        "",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    assert not dingtalk_media.allowed_url(url, api_base=API)


def test_file_names_cannot_leave_the_media_folder() -> None:
    item = {"kind": "file", "code": "c", "name": "../../etc/passwd"}
    name = dingtalk_media.file_name("msg==", 0, item, "")
    assert "/" not in name
    assert not name.startswith(".")
    assert name.endswith("-0-etc_passwd")


def test_file_names_keep_chinese_and_get_an_extension_when_unnamed() -> None:
    named = dingtalk_media.file_name("m", 1, {"kind": "file", "name": "合同 v2.pdf"}, "")
    assert named.endswith("-1-合同_v2.pdf")
    image = dingtalk_media.file_name("m", 0, {"kind": "image", "name": ""}, "")
    assert image.endswith("-0-image.jpg")
    png = dingtalk_media.file_name("m", 0, {"kind": "image", "name": ""}, "image/png; x=1")
    assert png.endswith("-0-image.png")
    # Stable: a retried task finds the file it saved before.
    assert dingtalk_media.file_name("m", 0, {"kind": "image", "name": ""}, "") == image


def test_pending_reads_only_what_is_still_to_fetch() -> None:
    items = [{"kind": "image", "code": "a", "name": ""}, {"kind": "image", "code": "", "name": ""}]
    meta = {dingtalk_media.MEDIA_META: json.dumps(items)}
    assert dingtalk_media.pending(meta) == [{"kind": "image", "code": "a", "name": ""}]
    assert dingtalk_media.pending({**meta, dingtalk_media.SAVED_META: "[]"}) == []
    assert dingtalk_media.pending({dingtalk_media.MEDIA_META: "not json"}) == []
    assert dingtalk_media.pending({}) == []


def test_event_summary_keeps_known_fields_only() -> None:
    event = {
        "EventType": "chat_add_member",
        "CorpId": "corp",
        "ChatId": "chat1",
        "UserId": [f"u{i}" for i in range(25)],
        "Operator": "boss",
        "AppSecret": "must-not-be-kept",
        "Nested": {"x": 1},
    }
    kept = dingtalk_events.summary(event)
    assert "AppSecret" not in kept
    assert "Nested" not in kept
    assert kept["UserId"] == [f"u{i}" for i in range(20)]
    assert kept["UserIdCount"] == 25
    assert kept["Operator"] == "boss"


def test_group_welcome_needs_text_a_join_and_an_open_conversation_id() -> None:
    event = dingtalk_events.event_message(
        {"EventType": "chat_add_member", "OpenConversationId": "cidG==", "Operator": "boss"},
        plain=b"x",
        app="default",
        now=1_700_000_000,
    )
    welcome = dingtalk_events.group_welcome(event, "大家好，我是客服机器人")
    assert welcome is not None
    assert (welcome.kind, welcome.is_group, welcome.conversation_id) == (
        MessageKind.EVENT,
        True,
        "cidG==",
    )
    assert welcome.meta["welcome_text"] == "大家好，我是客服机器人"
    assert welcome.event_id == f"welcome:{event.event_id}"
    assert dingtalk_events.group_welcome(event, "") is None
    quit_event = dingtalk_events.event_message(
        {"EventType": "chat_quit", "OpenConversationId": "cidG=="}, plain=b"y", app="a", now=1
    )
    assert dingtalk_events.group_welcome(quit_event, "hi") is None
    no_cid = dingtalk_events.event_message(
        {"EventType": "chat_add_member", "ChatId": "chat1"}, plain=b"z", app="a", now=1
    )
    assert dingtalk_events.group_welcome(no_cid, "hi") is None
