"""WeCom (企业微信) self-built application: verify and decrypt callbacks, send text replies.

Protocol notes: docs/protocols/wecom.md; callbacks use the WXBizMsgCrypt scheme
(docs/protocols/wechat-crypto.md) with receive id = CorpID. Official pages: 接收消息与事件
https://developer.work.weixin.qq.com/document/path/90238, 发送应用消息
https://developer.work.weixin.qq.com/document/path/90236.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import aiohttp

from adapters import media
from adapters.base import WebhookRequest, WebhookResult
from adapters.client import require
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from adapters.wechat import fields as wechat_fields
from adapters.wechat.callback import WeChatCallback
from adapters.wecom.client import WeComClient
from bot.domain import (
    DEFAULT_APP,
    Attachment,
    Content,
    InboundMessage,
    MessageKind,
    Platform,
    Reply,
)
from bot.errors import ConfigError

log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM
# Text content is capped at 2048 bytes; WeCom truncates longer text silently
# (docs/protocols/wecom.md#sending-messages).
MAX_TEXT_BYTES = 2048
# WeCom's duplicate-check window for a resend (seconds; at most 4 hours): longer than a
# redelivery takes (the broker's visibility timeout plus a turn).
DUPLICATE_CHECK_S = 600
# The message types a member can send the app besides text (接收普通消息,
# https://developer.work.weixin.qq.com/document/path/90239): each is answered, never dropped.
_MEDIA_TYPES = {
    "image": Content.IMAGE,
    "voice": Content.VOICE,
    "video": Content.VIDEO,
    "file": Content.FILE,
    "location": Content.LOCATION,
    "link": Content.LINK,
}


# What is fetched through media/get (bot/pipeline/media.py).
_FETCHED = frozenset({Content.IMAGE, Content.FILE, Content.VOICE})


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    return wechat_fields.require(PLATFORM, fields, *names)


def _sent_at(create_time: str) -> datetime:
    return wechat_fields.sent_at(PLATFORM, create_time)


class WeComAdapter(WeComClient, media.FetchesByMediaId):
    """One WeCom self-built application: its callback URL and its message/send API."""

    def __init__(
        self,
        *,
        corp_id: str,
        agent_id: str,
        token: str,
        aes_key: str,
        secret: str,
        api_base: str,
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
    ) -> None:
        require(
            "WeCom",
            app,
            corp_id=corp_id,
            agent_id=agent_id,
            token=token,
            secret=secret,
            api_base=api_base,
        )
        if not agent_id.isdigit():
            raise ConfigError(f"WeCom app {app!r}: agent_id must be the numeric AgentId")
        super().__init__(
            app, api_base, tokens, http_timeout_s, client_id=corp_id, client_secret=secret
        )
        self._agent_id = agent_id
        # What members send is fetched through media/get (bot/pipeline/media.py); 0: never.
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s
        self._callback = WeChatCallback(PLATFORM, token=token, aes_key=aes_key, receive_id=corp_id)

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer URL verification (GET) or accept one encrypted callback (POST); no I/O."""
        if request.method == "GET":
            return self._callback.verify_url(request, now=now)
        if request.method == "POST":
            fields = self._callback.open_post(request, now=now)
            return WebhookResult(status=200, body=b"", message=self._message(fields))
        raise self._callback.refuse_method(request.method)

    def _message(self, fields: Mapping[str, str]) -> InboundMessage | None:
        msg_type = fields.get("MsgType", "")
        agent_id = fields.get("AgentID") or self._agent_id
        if msg_type == "text":
            sender, create_time, msg_id = _require(fields, "FromUserName", "CreateTime", "MsgId")
            return InboundMessage(
                platform=PLATFORM,
                app=self.app,
                event_id=msg_id,
                # A self-built app's chat is 1:1 with the member.
                conversation_id=sender,
                sender_id=sender,
                text=fields.get("Content", ""),
                sent_at=_sent_at(create_time),
                route={"agent_id": agent_id},
            )
        if msg_type and msg_type != "event":
            return self._media_message(fields, msg_type, agent_id)
        event = fields.get("Event", "")
        if msg_type == "event" and event == "enter_agent":
            sender, create_time = _require(fields, "FromUserName", "CreateTime")
            return InboundMessage(
                platform=PLATFORM,
                app=self.app,
                # Events carry no MsgId: dedupe on FromUserName + CreateTime
                # (docs/protocols/wecom.md#deadline-retries-and-dedupe).
                event_id=f"{sender}:{create_time}:{event}",
                conversation_id=sender,
                sender_id=sender,
                text="",
                sent_at=_sent_at(create_time),
                kind=MessageKind.EVENT,
                event=event,
                route={"agent_id": agent_id},
            )
        log.info(
            "wecom %s %s ignored MsgType=%s Event=%s",
            self.app,
            fields.get("MsgId", ""),
            msg_type,
            event,
        )
        return None

    def _media_message(
        self, fields: Mapping[str, str], msg_type: str, agent_id: str
    ) -> InboundMessage:
        """A picture, voice, video, location, link or unknown type: a placeholder answered
        politely (or a picture shown to a vision model), with the media id to fetch."""
        sender, create_time, msg_id = _require(fields, "FromUserName", "CreateTime", "MsgId")
        kind = _MEDIA_TYPES.get(msg_type, Content.OTHER)
        name = fields.get("FileName", "") if kind is Content.FILE else ""
        detail = fields.get("Label", "") if kind is Content.LOCATION else fields.get("Title", "")
        media_id = fields.get("MediaId", "")
        # Pictures, files and voice (AMR, for speech recognition) are fetched (for the
        # models, and for the person taking over); video is not read yet.
        attachments = (
            (Attachment(kind, media_id, name=name[:255]),) if media_id and kind in _FETCHED else ()
        )
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            event_id=msg_id,
            conversation_id=sender,
            sender_id=sender,
            text=media.placeholder(kind, name or detail),
            sent_at=_sent_at(create_time),
            content=kind,
            placeholder=True,
            attachments=attachments,
            route={"agent_id": agent_id},
        )

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Flatten Markdown (WeCom text shows it raw) and cut into parts of ≤ 2048 bytes."""
        return split_text(markdown_to_plain(text), MAX_TEXT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Send one text part to reply.recipient_id; return WeCom's msgid."""
        payload = {
            "touser": reply.recipient_id,
            "msgtype": "text",
            "agentid": int(self._agent_id),
            "text": {"content": reply.text},
            "safe": 0,
        }
        if reply.resend:
            # WeCom drops a message whose content equals one sent to the same person within
            # the interval. Only on a resend: on every send it would also silence the same
            # answer to a customer who asks the same question twice.
            payload["enable_duplicate_check"] = 1
            payload["duplicate_check_interval"] = DUPLICATE_CHECK_S
        data = await self.post(http, "/cgi-bin/message/send", payload)
        if data.get("invaliduser"):
            log.warning("wecom %s reply %s: recipient invalid", self.app, reply.in_reply_to)
        msg_id = str(data.get("msgid", ""))
        log.info("wecom %s sent reply to %s msgid=%s", self.app, reply.in_reply_to, msg_id)
        return msg_id
