"""Feishu event bodies (schema 2.0 and 1.0) to InboundMessage: pure parsing, no I/O.

Notes in docs/protocols/feishu.md#events; receive event
https://open.feishu.cn/document/server-docs/im-v1/message/events/receive, message content
https://open.feishu.cn/document/server-docs/im-v1/message-content-description/message_content.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapters import media, payload
from bot.domain import Attachment, Content, InboundMessage, MessageKind, Platform
from bot.errors import PayloadError, WebhookError

log = logging.getLogger(__name__)

PLATFORM = Platform.FEISHU
_SPACES = re.compile(r"[ \t]{2,}")
# The @all placeholder; it is never the bot (docs/protocols/feishu.md#events).
_AT_ALL = "@_all"
_BOT_ADDED = "im.chat.member.bot.added_v1"
_P2P_ENTERED = "im.chat.access_event.bot_p2p_chat_entered_v1"
_RECEIVE = "im.message.receive_v1"


# message_type → what it is (message content, docs/protocols/feishu.md#events): each one is
# answered, a placeholder when the bot cannot read it.
_TYPES = {
    "image": Content.IMAGE,
    "audio": Content.VOICE,
    "media": Content.VIDEO,
    "file": Content.FILE,
    "sticker": Content.STICKER,
    "location": Content.LOCATION,
    "share_chat": Content.CARD,
    "share_user": Content.CARD,
}
MAX_IMAGES = 4  # the pictures of one post that are fetched


class BotIdentityUnknownError(WebhookError):
    """A group message mentions someone, and the bot's own open_id is not known yet.

    Answered 503 (webhook) or NACKed (long connection) so Feishu delivers it again later,
    by when `bot/v3/info` may answer; guessing would answer messages meant for others.
    """

    status = 503


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    return payload.json_object(raw, what, PLATFORM)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _sent_at(millis: Any) -> datetime:
    # create_time is a millisecond string; bound the digits so fromtimestamp cannot overflow.
    text = str(millis) if isinstance(millis, str | int) else ""
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return datetime.now(UTC)


def _content_object(message: Mapping[str, Any]) -> dict[str, Any]:
    # content is a JSON string inside the event JSON (docs/protocols/feishu.md#events).
    return json_object(_str(message.get("content")), "message content")


def _placeholder(kind: Content, images: tuple[Attachment, ...]) -> dict[str, Any]:
    typed: dict[str, Any] = {"content": kind, "placeholder": True}
    if images:
        typed["attachments"] = images
    return typed


def _post_images(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The pictures (``img`` elements) of a post, to fetch."""
    body: Mapping[str, Any] = _content_object(message)
    if "content" not in body:
        body = next((v for v in body.values() if isinstance(v, dict)), {})
    keys = [
        _str(_obj(element).get("image_key"))
        for paragraph in body.get("content") or []
        if isinstance(paragraph, list)
        for element in paragraph
        if _obj(element).get("tag") == "img"
    ]
    return tuple(Attachment(Content.IMAGE, key) for key in keys if key)[:MAX_IMAGES]


def quoted(msg_type: str, content: str) -> str:
    """The text of a quoted message as `GET im/v1/messages/{id}` gives it (body.content)."""
    kind = _TYPES.get(msg_type)
    if msg_type not in ("text", "post"):
        return media.placeholder(kind or Content.OTHER)
    try:
        body = json_object(content, "quoted message content")
    except PayloadError:
        return ""
    if msg_type == "post":
        return post_to_text(body, {})
    # Mentions stay as their @_user_N keys: drop them, the names are not in this answer.
    return _SPACES.sub(" ", re.sub(r"@_user_\d+", "", _str(body.get("text")))).strip()


def post_to_text(content: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """Flatten a post (rich text) body to plain text; ``names`` maps mention keys to text."""
    body: Mapping[str, Any] = content
    if "content" not in body:
        # Localised form {"zh_cn": {title, content}}: take the first language present.
        body = next((v for v in body.values() if isinstance(v, dict)), {})
    lines = [_str(body.get("title"))] if _str(body.get("title")) else []
    for paragraph in body.get("content") or []:
        if not isinstance(paragraph, list):
            continue
        pieces: list[str] = []
        for element in paragraph:
            element = _obj(element)
            tag = element.get("tag")
            if tag in ("text", "md", "code_block"):
                pieces.append(_str(element.get("text")))
            elif tag == "a":
                label, href = _str(element.get("text")), _str(element.get("href"))
                pieces.append(f"{label} ({href})" if label and href and label != href else href)
            elif tag == "at":
                key = _str(element.get("user_id"))
                pieces.append(names.get(key, "@" + _str(element.get("user_name"))))
            elif tag == "emotion":
                pieces.append(f"[{_str(element.get('emoji_type'))}]")
        # A dropped mention leaves the space that followed it at the start of a line.
        lines.append("".join(pieces).strip())
    return "\n".join(lines).strip()


class EventParser:
    """Turns the decrypted events of one app into messages; mentions decide group traffic."""

    def __init__(self, app: str, bot_open_id: str) -> None:
        self.app = app
        # Empty: unknown until FeishuAdapter.prepare fetched it; group messages that mention
        # anyone are then refused with BotIdentityUnknownError (Feishu delivers them again).
        self.bot_open_id = bot_open_id

    def v2(self, header: Mapping[str, Any], event: Mapping[str, Any]) -> InboundMessage | None:
        event_type = _str(header.get("event_type"))
        event_id = _str(header.get("event_id"))
        if event_type == _RECEIVE:
            return self._receive(event_id, event)
        if event_type in (_BOT_ADDED, _P2P_ENTERED):
            chat_id = _str(event.get("chat_id"))
            operator = _obj(event.get("operator_id"))
            if not chat_id or not event_id:
                raise PayloadError(f"{event_type} without chat_id or event_id", PLATFORM)
            return self._event_message(
                event_id=event_id,
                event=event_type,
                chat_id=chat_id,
                sender=_str(operator.get("open_id")),
                is_group=event_type == _BOT_ADDED,
                create_time=header.get("create_time"),
            )
        log.info("feishu %s %s ignored event %s", self.app, event_id, event_type)
        return None

    def _event_message(
        self,
        *,
        event_id: str,
        event: str,
        chat_id: str,
        sender: str,
        is_group: bool,
        create_time: Any,
    ) -> InboundMessage:
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            event_id=event_id,
            conversation_id=chat_id,
            sender_id=sender,
            text="",
            is_group=is_group,
            sent_at=_sent_at(create_time),
            kind=MessageKind.EVENT,
            event=event,
            route={
                "event_id": event_id,
                "chat_id": chat_id,
                "chat_type": "group" if is_group else "p2p",
            },
        )

    def _receive(self, event_id: str, event: Mapping[str, Any]) -> InboundMessage | None:
        sender = _obj(event.get("sender"))
        message = _obj(event.get("message"))
        message_id = _str(message.get("message_id"))
        if sender.get("sender_type") == "app":
            log.info("feishu %s %s ignored: sent by an app", self.app, message_id)
            return None
        chat_id = _str(message.get("chat_id"))
        open_id = _str(_obj(sender.get("sender_id")).get("open_id"))
        if not (message_id and chat_id and open_id):
            raise PayloadError("message without message_id, chat_id or sender", PLATFORM)
        chat_type = _str(message.get("chat_type"))
        # "group" and "topic_group" alike: only "p2p" is a one-to-one chat.
        is_group = chat_type != "p2p"
        mentions = [_obj(m) for m in message.get("mentions") or []]
        bot_keys = self._bot_mention_keys(mentions)
        if is_group and not bot_keys:
            log.info("feishu %s %s ignored: group message not for the bot", self.app, message_id)
            return None
        read = self._content(message, mentions, bot_keys)
        if read is None:
            log.info(
                "feishu %s %s ignored message_type=%s",
                self.app,
                message_id,
                message.get("message_type"),
            )
            return None
        text, typed = read
        chat = self._chat_message(
            event_id=event_id,
            message_id=message_id,
            chat_id=chat_id,
            chat_type=chat_type,
            sender=open_id,
            text=text,
            sent_at=_sent_at(message.get("create_time")),
            **typed,
        )
        parent_id = _str(message.get("parent_id"))
        if not parent_id:
            return chat
        # A reply quoting an earlier message: the worker reads that one's text (quotes.py).
        return replace(chat, route={**chat.route, "parent_id": parent_id})

    def _content(
        self, message: Mapping[str, Any], mentions: list[dict[str, Any]], bot_keys: set[str]
    ) -> tuple[str, dict[str, Any]] | None:
        """The text of a message and its typed fields (content, placeholder, attachments);
        None for what no person wrote (system messages). Every other type is answered."""
        msg_type = _str(message.get("message_type"))
        if msg_type in ("text", "post"):
            text = self._text(message, mentions, bot_keys) or ""
            images = _post_images(message) if msg_type == "post" else ()
            if text or not images:
                # Text with pictures: the text is the question, the pictures go along.
                return text, {"attachments": images} if images else {}
            return media.placeholder(Content.IMAGE), _placeholder(Content.IMAGE, images)
        if msg_type == "system":
            return None
        kind = _TYPES.get(msg_type, Content.OTHER)
        content = _content_object(message)
        detail = _str(content.get("file_name") or content.get("name"))
        if kind is Content.FILE:
            # A file is fetched too (message resources, type=file) for its text.
            key = _str(content.get("file_key"))
            fetched = (Attachment(Content.FILE, key, name=detail[:255]),) if key else ()
        else:
            # A picture (image_key) or voice (audio: file_key, Opus in Ogg) is fetched.
            field = {Content.IMAGE: "image_key", Content.VOICE: "file_key"}.get(kind, "")
            key = _str(content.get(field)) if field else ""
            fetched = (Attachment(kind, key),) if key else ()
        return media.placeholder(kind, detail), _placeholder(kind, fetched)

    def _chat_message(
        self,
        *,
        event_id: str,
        message_id: str,
        chat_id: str,
        chat_type: str,
        sender: str,
        text: str,
        sent_at: datetime,
        **typed: Any,
    ) -> InboundMessage:
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            # The message id, not header.event_id: a re-pushed event may get a new event_id for the
            # same message, and must still be deduplicated
            # (docs/protocols/feishu.md#deadline-retries-and-dedupe).
            event_id=message_id,
            conversation_id=chat_id,
            sender_id=sender,
            text=text,
            is_group=chat_type != "p2p",
            sent_at=sent_at,
            route={
                "message_id": message_id,
                "chat_id": chat_id,
                "chat_type": chat_type,
                "event_id": event_id,
            },
            **typed,
        )

    def _bot_mention_keys(self, mentions: list[dict[str, Any]]) -> set[str]:
        """The placeholder keys that mention this bot (never @all)."""
        real = [
            m
            for m in mentions
            if _str(m.get("key")) != _AT_ALL and _str(_obj(m.get("id")).get("open_id"))
        ]
        if not real:
            return set()
        if not self.bot_open_id:
            # Some mention, and we cannot tell whether it is ours: never guess
            # (docs/protocols/feishu.md#events).
            raise BotIdentityUnknownError(
                "bot open_id unknown (FEISHU_BOT_OPEN_ID unset, bot/v3/info not fetched yet); "
                "group message with mentions deferred for Feishu to deliver again",
                PLATFORM,
            )
        return {
            _str(m.get("key"))
            for m in real
            if _str(_obj(m.get("id")).get("open_id")) == self.bot_open_id
        }

    def _text(
        self, message: Mapping[str, Any], mentions: list[dict[str, Any]], bot_keys: set[str]
    ) -> str | None:
        names = {
            _str(m.get("key")): "" if _str(m.get("key")) in bot_keys else "@" + _str(m.get("name"))
            for m in mentions
            if m.get("key")
        }
        names.setdefault(_AT_ALL, "@所有人")
        msg_type = message.get("message_type")
        if msg_type not in ("text", "post"):
            return None
        content = _content_object(message)
        if msg_type == "post":
            text = post_to_text(content, names)
        else:
            text = _str(content.get("text"))
            # Longest keys first: "@_user_1" must not eat the start of "@_user_10".
            for key in sorted(names, key=len, reverse=True):
                text = text.replace(key, names[key])
        # A dropped mention leaves a double or leading space behind.
        return _SPACES.sub(" ", text).strip()

    def v1(self, payload: Mapping[str, Any], event: Mapping[str, Any]) -> InboundMessage | None:
        """The 1.0 envelope ({"uuid","token","type":"event_callback","event"}) of old apps."""
        event_type = _str(event.get("type"))
        event_id = _str(payload.get("uuid"))
        if event_type == "message":
            message_id = _str(event.get("open_message_id"))
            chat_id = _str(event.get("open_chat_id"))
            open_id = _str(event.get("open_id"))
            if not (message_id and chat_id and open_id):
                raise PayloadError("message without open_message_id or sender", PLATFORM)
            is_group = event.get("chat_type") == "group"
            if is_group and not event.get("is_mention"):
                return None
            if event.get("msg_type") != "text":
                return None
            return self._chat_message(
                event_id=event_id,
                message_id=message_id,
                chat_id=chat_id,
                chat_type="group" if is_group else "p2p",
                sender=open_id,
                text=_str(event.get("text_without_at_bot") or event.get("text")).strip(),
                sent_at=_sent_at(str(payload.get("ts", "")).split(".")[0] + "000"),
            )
        if event_type in ("add_bot", "p2p_chat_create") and event_id:
            chat_id = _str(event.get("open_chat_id") or event.get("chat_id"))
            if chat_id:
                return self._event_message(
                    event_id=event_id,
                    event=event_type,
                    chat_id=chat_id,
                    sender=_str(_obj(event.get("operator")).get("open_id")),
                    is_group=event_type == "add_bot",
                    create_time=None,
                )
        log.info("feishu %s %s ignored 1.0 event %s", self.app, event_id, event_type)
        return None
