"""DingTalk event-subscription events as messages to record, not to answer.

Protocol: docs/protocols/dingtalk.md#event-subscription-over-http.

Every decrypted event (``check_url``, ``chat_add_member``, ``chat_remove_member``,
``chat_quit``, ``chat_update_title``, ``chat_disband``, ``user_add_org``…) becomes a NOTICE
`InboundMessage` (its `event` the EventType, its text the summary): the web process queues it
like any message (deduplicated on its event id), and the worker records it
(bot/pipeline/events.py) instead of asking the agent. Event names:
https://open.dingtalk.com/document/orgapp/event-list (the group events are 群会话事件);
payload fields as in the docs' samples: ``EventType``, ``CorpId``, ``ChatId``,
``OpenConversationId`` [?: only some payloads carry it], ``Operator``, ``UserId`` (a list),
``TimeStamp``.

Pure: no I/O. The summary keeps a fixed list of fields, so nothing unexpected (and nothing
secret) reaches the database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.domain import GROUP_WELCOME, InboundMessage, MessageKind, Platform

PLATFORM = Platform.DINGTALK
# Events after which the robot may greet a group (README "DingTalk events"): DingTalk sends
# chat_add_member when people (or the robot) join a group. A group is greeted at most once a
# day (the pipeline's welcome rule), so a busy group is not greeted on every join.
GROUP_JOIN_EVENTS = frozenset({"chat_add_member"})
# Recorded fields; anything else in the payload is dropped.
_SUMMARY_FIELDS = (
    "EventType",
    "CorpId",
    "ChatId",
    "OpenConversationId",
    "Operator",
    "UserId",
    "DeptId",
    "TimeStamp",
)
_MAX_VALUE_CHARS = 128
_MAX_LIST_ITEMS = 20
_EVENT_TYPE_CHARS = 64


def _scalar(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:_MAX_VALUE_CHARS]


def summary(event: Mapping[str, Any]) -> dict[str, Any]:
    """The recorded part of an event: known fields only, values and lists cut short."""
    out: dict[str, Any] = {}
    for name in _SUMMARY_FIELDS:
        if name not in event:
            continue
        value = event[name]
        if isinstance(value, list):
            out[name] = [_scalar(v) for v in value[:_MAX_LIST_ITEMS] if not isinstance(v, dict)]
            if len(value) > _MAX_LIST_ITEMS:
                out[f"{name}Count"] = len(value)
        elif not isinstance(value, dict):
            out[name] = _scalar(value)
    return out


def _normalised(event: Mapping[str, Any]) -> dict[str, Any]:
    """The payload with the known fields under their HTTP-callback names (``CorpId``).

    Stream EVENT payloads may spell them in lower camel case (``openConversationId``) [?].
    """
    out = dict(event)
    for name in (*_SUMMARY_FIELDS, "EventId"):
        lower = name[0].lower() + name[1:]
        if name not in out and lower in out:
            out[name] = out[lower]
    return out


def stream_event(headers: Mapping[str, str], data: str, *, app: str, now: float) -> InboundMessage:
    """A Stream EVENT frame as the same NOTICE message as its HTTP callback.

    docs/protocols/dingtalk.md#stream-mode

    The frame headers carry ``eventType``, ``eventId`` and ``eventCorpId``; ``data`` is the
    event payload as a JSON string (unreadable data is recorded with the headers only).
    """
    try:
        body = json.loads(data) if data else {}
    except (ValueError, RecursionError):
        body = {}
    event = dict(body) if isinstance(body, dict) else {}
    for name, header in (
        ("EventType", "eventType"),
        ("EventId", "eventId"),
        ("CorpId", "eventCorpId"),
    ):
        if headers.get(header):
            event[name] = headers[header]
    return event_message(event, plain=data.encode("utf-8"), app=app, now=now)


def _text(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value)[:_MAX_VALUE_CHARS]


def event_message(
    event: Mapping[str, Any], *, plain: bytes, app: str, now: float
) -> InboundMessage:
    """A NOTICE message for the worker to record; its event id is stable across retries."""
    event = _normalised(event)
    event_type = _text(event, "EventType")[:_EVENT_TYPE_CHARS] or "unknown"
    # No EventId in most payloads: the decrypted body is the same on every retry, so its hash
    # identifies the event (the ciphertext differs by its random prefix).
    event_id = (
        _text(event, "EventId") or _text(event, "eventId") or hashlib.sha256(plain).hexdigest()[:32]
    )
    open_conversation = _text(event, "OpenConversationId")
    chat_id = _text(event, "ChatId")
    corp_id = _text(event, "CorpId")
    # Events live in their own "event:" conversations so their queue tickets never hold up
    # the turns of a real chat (tickets are per conversation, bot/pipeline/intake.py).
    conversation = open_conversation or chat_id or corp_id or "app"
    return InboundMessage(
        platform=PLATFORM,
        app=app,
        event_id=f"event:{event_id}",
        conversation_id=f"event:{conversation}",
        sender_id=_text(event, "Operator"),
        text=json.dumps(summary(event), ensure_ascii=False, sort_keys=True),
        is_group=bool(open_conversation or chat_id),
        sent_at=datetime.fromtimestamp(now, UTC),
        kind=MessageKind.NOTICE,
        event=event_type,
        route={"openConversationId": open_conversation, "chatId": chat_id, "corpId": corp_id},
    )


def group_welcome(event: InboundMessage) -> InboundMessage | None:
    """The welcome turn for a group the robot joined, or None when none is due.

    Sent through the robot group API (`robot/groupMessages/send`), which needs the
    OpenConversationId; a payload without one cannot be greeted. The text is the app's
    DINGTALK_GROUP_WELCOME_TEXT, answered by the worker's auto-reply step.
    """
    conversation = event.route.get("openConversationId", "")
    if not conversation or event.event not in GROUP_JOIN_EVENTS:
        return None
    return InboundMessage(
        platform=PLATFORM,
        app=event.app,
        event_id=f"welcome:{event.event_id}",
        conversation_id=conversation,
        sender_id=event.sender_id,
        text="",
        is_group=True,
        sent_at=event.sent_at,
        kind=MessageKind.EVENT,
        event=GROUP_WELCOME,
        route={
            "conversationId": conversation,
            "conversationType": "2",
            "senderStaffId": "",
            "sessionWebhook": "",
        },
    )
