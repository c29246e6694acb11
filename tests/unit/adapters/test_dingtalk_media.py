"""DingTalk media and event helpers: what is fetched, from where, under which name, what is kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters import media
from adapters.dingtalk import events as dingtalk_events
from adapters.dingtalk import media as dingtalk_media
from bot.domain import GROUP_WELCOME, Attachment, Content, InboundMessage, MessageKind, Platform
from bot.pipeline import media as pipeline_media

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
    item = Attachment(Content.FILE, "c", "../../etc/passwd")
    name = media.file_name("msg==", 0, item, "")
    assert "/" not in name
    assert not name.startswith(".")
    assert name.endswith("-0-etc_passwd")


def test_file_names_keep_chinese_and_get_an_extension_when_unnamed() -> None:
    named = media.file_name("m", 1, Attachment(Content.FILE, "c", "合同 v2.pdf"), "")
    assert named.endswith("-1-合同_v2.pdf")
    unnamed = Attachment(Content.IMAGE, "c")
    image = media.file_name("m", 0, unnamed, "")
    assert image.endswith("-0-image.jpg")
    png = media.file_name("m", 0, unnamed, "image/png; x=1")
    assert png.endswith("-0-image.png")
    # Stable: a retried task finds the file it saved before.
    assert media.file_name("m", 0, unnamed, "") == image


def test_pending_reads_only_what_is_still_to_fetch() -> None:
    todo, no_code = Attachment(Content.IMAGE, "a"), Attachment(Content.IMAGE, "")
    saved = Attachment(Content.IMAGE, "b", path="/x")
    failed = Attachment(Content.IMAGE, "c", error="too_large")
    msg = InboundMessage(Platform.DINGTALK, "a", "e", "c", "u", "[图片]")
    assert pipeline_media.pending(replace(msg, attachments=(todo, no_code, saved, failed))) == [
        todo
    ]
    assert pipeline_media.pending(msg) == []


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


def test_group_welcome_needs_a_join_and_an_open_conversation_id() -> None:
    event = dingtalk_events.event_message(
        {"EventType": "chat_add_member", "OpenConversationId": "cidG==", "Operator": "boss"},
        plain=b"x",
        app="default",
        now=1_700_000_000,
    )
    welcome = dingtalk_events.group_welcome(event)
    assert welcome is not None
    assert (welcome.kind, welcome.is_group, welcome.conversation_id, welcome.event) == (
        MessageKind.EVENT,
        True,
        "cidG==",
        GROUP_WELCOME,
    )
    assert welcome.event_id == f"welcome:{event.event_id}"
    quit_event = dingtalk_events.event_message(
        {"EventType": "chat_quit", "OpenConversationId": "cidG=="}, plain=b"y", app="a", now=1
    )
    assert dingtalk_events.group_welcome(quit_event) is None
    no_cid = dingtalk_events.event_message(
        {"EventType": "chat_add_member", "ChatId": "chat1"}, plain=b"z", app="a", now=1
    )
    assert dingtalk_events.group_welcome(no_cid) is None
