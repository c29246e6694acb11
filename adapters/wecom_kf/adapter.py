"""WeCom customer service (微信客服): the callback, the pull, replies and the human handoff.

Protocol notes: docs/protocols/wecom-kf.md (the callback crypto as for the WeCom app,
receive id = CorpID). The callback only says "pull now" (`kf_msg_or_event` with a `Token`);
the worker then pages through kf/sync_msg from the cursor saved for that `open_kfid`
(sync.py; docs/protocols/pitfalls.md#pitfall-12-the-wecom-kf-cursor).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters.base import Queue, WebhookRequest, WebhookResult
from adapters.client import require
from adapters.media import FetchesByMediaId
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from adapters.wechat import fields as wechat_fields
from adapters.wechat.callback import WeChatCallback
from adapters.wecom_kf import sync
from adapters.wecom_kf.client import STATE_QUEUE, WeComKfClient
from adapters.wecom_kf.parse import (
    ENTER_SESSION,
    MEDIA_TEXT,
    ORIGIN_CUSTOMER,
    SYNC_EVENT,
    KfItem,
    SyncPage,
)
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

PLATFORM = Platform.WECOM_KF
# Text content is capped at 2048 bytes, as for the WeCom app
# (docs/protocols/wecom.md#sending-messages,
# docs/protocols/pitfalls.md#pitfall-10-length-is-counted-in-bytes).
MAX_TEXT_BYTES = 2048


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    return wechat_fields.require(PLATFORM, fields, *names)


def _sent_at(seconds: int | str) -> datetime:
    return wechat_fields.sent_at(PLATFORM, seconds, "time")


class WeComKfAdapter(WeComKfClient, FetchesByMediaId):
    """One 微信客服 setup: its callback URL, the sync_msg pull and the kf/send_msg API."""

    def __init__(
        self,
        *,
        corp_id: str,
        token: str,
        aes_key: str,
        secret: str,
        api_base: str,
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        redis: aioredis.Redis | None = None,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
    ) -> None:
        require(
            "WeCom KF",
            app,
            corp_id=corp_id,
            token=token,
            aes_key=aes_key,
            secret=secret,
            api_base=api_base,
        )
        super().__init__(
            app, api_base, tokens, http_timeout_s, client_id=corp_id, client_secret=secret
        )
        self._callback = WeChatCallback(PLATFORM, token=token, aes_key=aes_key, receive_id=corp_id)
        # The sync cursor and the "a servicer holds it" flags (sync.py); None: CLI tools.
        self._redis = redis
        # Pictures customers send are fetched through media/get (bot/pipeline/media.py).
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer URL verification (GET) or accept one encrypted callback (POST); no I/O."""
        if request.method == "GET":
            return self._callback.verify_url(request, now=now)
        if request.method == "POST":
            fields = self._callback.open_post(request, now=now)
            return WebhookResult(status=200, body=b"", message=self._trigger(fields))
        raise self._callback.refuse_method(request.method)

    def _trigger(self, fields: Mapping[str, str]) -> InboundMessage | None:
        event = fields.get("Event", "")
        if fields.get("MsgType") != "event" or event != SYNC_EVENT:
            log.info("wecom_kf %s callback ignored Event=%s", self.app, event)
            return None
        sync_token, open_kfid, create_time = _require(fields, "Token", "OpenKfId", "CreateTime")
        # WeCom retries a callback with the same Token: derive the dedupe key from it.
        digest = hashlib.sha256(sync_token.encode("utf-8")).hexdigest()[:32]
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            event_id=f"{SYNC_EVENT}:{digest}",
            conversation_id=open_kfid,
            sender_id=open_kfid,
            text="",
            sent_at=_sent_at(create_time),
            kind=MessageKind.PULL,
            event=SYNC_EVENT,
            route={"sync_token": sync_token, "open_kfid": open_kfid},
        )

    def inbound(self, item: KfItem) -> InboundMessage | None:
        """The message to answer for one synced item; None for what the bot must not answer."""
        if not item.external_userid:
            return None
        route = {"open_kfid": item.open_kfid, "external_userid": item.external_userid}
        sent_at = datetime.fromtimestamp(item.send_time, UTC) if item.send_time else None
        common: dict[str, Any] = {
            "platform": PLATFORM,
            "app": self.app,
            "event_id": item.msgid,
            # One customer talks to one KF account: the customer is the conversation.
            "conversation_id": item.external_userid,
            "sender_id": item.external_userid,
        }
        if sent_at is not None:
            common["sent_at"] = sent_at
        if item.origin == ORIGIN_CUSTOMER and item.msgtype == "text":
            return InboundMessage(text=item.content, route=route, **common)
        if item.origin == ORIGIN_CUSTOMER and item.msgtype and item.msgtype != "event":
            # Image, voice, file, location…: the bot cannot read them, but the customer is
            # owed an answer: a placeholder text, flagged so the polite fixed reply of
            # bot/pipeline/autoreply.py answers instead of the model.
            text = MEDIA_TEXT.get(item.msgtype, f"[{item.msgtype}]")
            content = Content.of(item.msgtype)
            # Pictures, files and voice (AMR) are fetched (for the models, and for the person
            # taking over).
            picture = (
                (Attachment(content, item.media_id),)
                if content in (Content.IMAGE, Content.FILE, Content.VOICE) and item.media_id
                else ()
            )
            return InboundMessage(
                text=text,
                content=content,
                placeholder=True,
                attachments=picture,
                route=route,
                **common,
            )
        if item.msgtype == "event" and item.event_type == ENTER_SESSION:
            # The code answers this event only, once, within 20 s (docs/protocols/wecom-kf.md).
            route.update(welcome_code=item.welcome_code, welcome_for=item.msgid)
            return InboundMessage(
                text="",
                kind=MessageKind.EVENT,
                event=ENTER_SESSION,
                event_key=item.scene,
                route=route,
                **common,
            )
        log.info(
            "wecom_kf %s %s skipped origin=%d msgtype=%s event=%s",
            self.app,
            item.msgid,
            item.origin,
            item.msgtype,
            item.event_type,
        )
        return None

    # --- the pull and the human handoff ---------------------------------------------------

    async def pull(self, trigger: InboundMessage, http: aiohttp.ClientSession, queue: Queue) -> int:
        """Queue every new message of the trigger's account from its saved cursor (sync.py)."""
        open_kfid = trigger.route.get("open_kfid", "")
        sync_token = trigger.route.get("sync_token", "")

        async def fetch_page(cursor: str) -> SyncPage:
            return await self.sync(http, open_kfid=open_kfid, sync_token=sync_token, cursor=cursor)

        queued = await sync.pull(
            self._need_redis(),
            app=self.app,
            open_kfid=open_kfid,
            fetch_page=fetch_page,
            to_message=self.inbound,
            queue=queue,
        )
        log.info(
            "wecom_kf %s %s synced %s: %d queued", self.app, trigger.event_id, open_kfid, queued
        )
        return queued

    async def hand_to_human(self, reply: Reply, http: aiohttp.ClientSession) -> None:
        """Move the session to the servicers' queue (state 2; WeCom assigns it) and keep the
        bot silent there. Raises the API's errors when WeCom refuses."""
        open_kfid, external = self._session_of(reply)
        await self.transfer(
            http, open_kfid=open_kfid, external_userid=external, service_state=STATE_QUEUE
        )
        await sync.mark_human(self._need_redis(), self.app, open_kfid, external)

    async def back_to_bot(self, reply: Reply) -> None:
        """Forget that a servicer holds the session, so sync queues the customer again."""
        open_kfid, external = self._session_of(reply)
        await sync.clear_human(self._need_redis(), self.app, open_kfid, external)

    def _session_of(self, reply: Reply) -> tuple[str, str]:
        return (
            reply.route.get("open_kfid", ""),
            reply.route.get("external_userid") or reply.recipient_id,
        )

    def _need_redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise ConfigError("this 微信客服 adapter was built without Redis")
        return self._redis

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Flatten Markdown (WeChat shows it raw) and cut into parts of ≤ 2048 bytes."""
        return split_text(markdown_to_plain(text), MAX_TEXT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Send one text part; a welcome (enter_session) goes through send_msg_on_event."""
        text = {"content": reply.text}
        welcome_code = reply.route.get("welcome_code", "")
        if welcome_code and reply.in_reply_to == reply.route.get("welcome_for"):
            # The code is valid for 20 s and once (docs/protocols/wecom-kf.md).
            path = "/cgi-bin/kf/send_msg_on_event"
            payload: dict[str, Any] = {"code": welcome_code, "msgtype": "text", "text": text}
        else:
            path = "/cgi-bin/kf/send_msg"
            payload = {
                "touser": reply.route.get("external_userid") or reply.recipient_id,
                "open_kfid": reply.route.get("open_kfid", ""),
                "msgtype": "text",
                "text": text,
            }
        data = await self.post(http, path, payload)
        msgid = data.get("msgid")
        msg_id = msgid if isinstance(msgid, str) else ""
        log.info("wecom_kf %s sent reply to %s msgid=%s", self.app, reply.in_reply_to, msg_id)
        return msg_id
