"""WeCom customer service (微信客服): callback, the kf/sync_msg pull, and kf/send_msg replies.

Protocol notes: docs/protocols/wecom-kf.md (and
docs/protocols/wechat-crypto.md/docs/protocols/wecom.md for the callback crypto, receive id =
CorpID). The callback only says "pull now" (`kf_msg_or_event` with a `Token`); the worker then pages
through kf/sync_msg from the cursor saved for that `open_kfid`
(docs/protocols/pitfalls.md#pitfall-12-the-wecom-kf-cursor). Official pages: 接收消息和事件
https://kf.weixin.qq.com/api/doc/path/94670 (kf/sync_msg), 发送消息
https://kf.weixin.qq.com/api/doc/path/94677, 发送欢迎语等事件响应消息
https://kf.weixin.qq.com/api/doc/path/95122.
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
from adapters.http import TokenRejectedError as _TokenRejectedError
from adapters.http import errcode_of, request_json
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import fields as wechat_fields
from adapters.wecom_kf import sync
from adapters.wecom_kf.parse import (
    ENTER_SESSION,
    MEDIA_TEXT,
    ORIGIN_CUSTOMER,
    SYNC_EVENT,
    SYNC_LIMIT,
    KfItem,
    SyncPage,
    parse_sync_msg,
)
from adapters.xml import parse_xml
from bot.domain import DEFAULT_APP, Content, InboundMessage, MessageKind, Platform, Reply
from bot.errors import (
    ConfigError,
    PayloadError,
    PlatformRejectedError,
    PlatformUnavailableError,
)

log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM_KF
# kf/service_state values (docs/protocols/wecom-kf.md).
STATE_QUEUE = 2
STATE_HUMAN = 3
# Text content is capped at 2048 bytes, as for the WeCom app
# (docs/protocols/wecom.md#sending-messages,
# docs/protocols/pitfalls.md#pitfall-10-length-is-counted-in-bytes).
MAX_TEXT_BYTES = 2048
MAX_SKEW_S = 300
_TOKEN_ERRCODES = frozenset({40001, 40014, 41001, 42001})
_BUSY_ERRCODES = frozenset({-1, 45009, 45011, 45033})
_CREDENTIAL_ERRCODES = frozenset({40001, 40013})
# Refusals because of the platform's reply limits: 48 h after the customer's last message, at most 5
# messages per customer message, or a session no longer in state 0/1 (docs/protocols/wecom-kf.md).
# Checked against the 微信客服 global error-code table (mirror: kancloud.cn/wikizhima/
# wechatkf-api/2376708) and errmsgs seen in the wild: 95000 invalid open_kfid; 95001
# 发送客服消息次数限制 (the 5-message limit); 95018 "send msg session status invalid" (the session
# is not in state 0/1, e.g. a human holds it). 95013 (session ended) is still from memory [?]. The
# live page (open.work.weixin.qq.com/kf/doc) was not reachable from here. Every 95xxx is a permanent
# refusal anyway (open_kfid, msg token, welcome code, limits): none is retried.
_LIMIT_ERRCODES = frozenset({95001, 95013, 95018, 45047})


def _is_kf_refusal(errcode: int) -> bool:
    return 95000 <= errcode < 96000


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    return wechat_fields.require(PLATFORM, fields, *names)


def _sent_at(seconds: int | str) -> datetime:
    return wechat_fields.sent_at(PLATFORM, seconds, "time")


class WeComKfAdapter:
    """One 微信客服 setup: its callback URL, the sync_msg pull and the kf/send_msg API."""

    platform = PLATFORM

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
    ) -> None:
        missing = [
            name
            for name, value in (
                ("corp_id", corp_id),
                ("token", token),
                ("aes_key", aes_key),
                ("secret", secret),
                ("api_base", api_base),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"WeCom KF app {app!r} is missing {', '.join(missing)}")
        self.app = app
        self._corp_id = corp_id
        self._token = token
        self._aes_key = wechat_crypto.decode_aes_key(aes_key)
        self._secret = secret
        self._api_base = api_base.rstrip("/")
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=http_timeout_s)
        # The sync cursor and the "a servicer holds it" flags (sync.py); None: CLI tools.
        self._redis = redis

    @property
    def token_key(self) -> str:
        """The Redis key of this app's access token (the KF secret has its own token)."""
        return f"token:{PLATFORM.value}:{self.app}"

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer URL verification (GET) or accept one encrypted callback (POST); no I/O."""
        if request.method == "GET":
            (echostr,) = _require(request.query, "echostr")
            plain = self._open(request.query, echostr, now=now)
            # The bare plaintext: no quotes, BOM or newline
            # (docs/protocols/pitfalls.md#pitfall-13-wecom-url-verification).
            return WebhookResult(status=200, body=plain, content_type="text/plain")
        if request.method == "POST":
            _require(request.query, "msg_signature", "timestamp", "nonce")
            (encrypted,) = _require(parse_xml(request.body), "Encrypt")
            fields = parse_xml(self._open(request.query, encrypted, now=now))
            return WebhookResult(status=200, body=b"", message=self._trigger(fields))
        raise PayloadError(f"method {request.method} not allowed", PLATFORM)

    def _open(self, query: Mapping[str, str], encrypted: str, *, now: float) -> bytes:
        msg_signature, timestamp, nonce = _require(query, "msg_signature", "timestamp", "nonce")
        wechat_crypto.verify(
            msg_signature,
            token=self._token,
            timestamp=timestamp,
            nonce=nonce,
            encrypted=encrypted,
            now=now,
            max_skew_s=MAX_SKEW_S,
        )
        return wechat_crypto.decrypt(encrypted, aes_key=self._aes_key, receiver_id=self._corp_id)

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
            return InboundMessage(
                text=text, content=content, placeholder=True, route=route, **common
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

    # --- the pull ------------------------------------------------------------------------

    async def sync(
        self, http: aiohttp.ClientSession, *, open_kfid: str, sync_token: str, cursor: str
    ) -> SyncPage:
        """Fetch one page of kf/sync_msg from `cursor` ("" for the beginning)."""
        payload = {
            "cursor": cursor,
            "token": sync_token,
            "limit": SYNC_LIMIT,
            "voice_format": 0,
            "open_kfid": open_kfid,
        }
        data = await self._post_with_token(http, "/cgi-bin/kf/sync_msg", payload)
        return parse_sync_msg(data)

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

    async def transfer(
        self,
        http: aiohttp.ClientSession,
        *,
        open_kfid: str,
        external_userid: str,
        service_state: int,
        servicer_userid: str = "",
    ) -> None:
        """Move a session with kf/service_state/trans: 2 queue, 3 a human, 4 end.

        docs/protocols/wecom-kf.md#session-states
        """
        payload: dict[str, Any] = {
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "service_state": service_state,
        }
        if servicer_userid:
            payload["servicer_userid"] = servicer_userid
        await self._post_with_token(http, "/cgi-bin/kf/service_state/trans", payload)
        log.info(
            "wecom_kf %s session of %s moved to state %d", self.app, external_userid, service_state
        )

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
        data = await self._post_with_token(http, path, payload)
        msgid = data.get("msgid")
        msg_id = msgid if isinstance(msgid, str) else ""
        log.info("wecom_kf %s sent reply to %s msgid=%s", self.app, reply.in_reply_to, msg_id)
        return msg_id

    # --- HTTP ----------------------------------------------------------------------------

    async def _post_with_token(
        self, http: aiohttp.ClientSession, path: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        token = await self._access_token(http)
        try:
            return await self._post(http, token, path, payload)
        except _TokenRejectedError as exc:
            log.info("wecom_kf %s token refused (errcode %s), refreshing", self.app, exc.errcode)
            if self._tokens is not None:
                await self._tokens.invalidate(self.token_key, token)
            token = await self._access_token(http)
            try:
                return await self._post(http, token, path, payload)
            except _TokenRejectedError as again:
                raise PlatformUnavailableError(
                    "access token refused twice", PLATFORM, errcode=again.errcode
                ) from again

    async def _post(
        self, http: aiohttp.ClientSession, token: str, path: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        data = await self._call(http, "POST", path, params={"access_token": token}, json=payload)
        errcode = errcode_of(data)
        if errcode in _TOKEN_ERRCODES:
            raise _TokenRejectedError(errcode)
        _raise_for_errcode(errcode, path.removeprefix("/cgi-bin/"))
        return data

    async def _access_token(self, http: aiohttp.ClientSession) -> str:
        async def fetch() -> tuple[str, float]:
            return await self._fetch_token(http)

        if self._tokens is None:
            return (await fetch())[0]
        return await self._tokens.get(self.token_key, fetch)

    async def _fetch_token(self, http: aiohttp.ClientSession) -> tuple[str, float]:
        params = {"corpid": self._corp_id, "corpsecret": self._secret}
        data = await self._call(http, "GET", "/cgi-bin/gettoken", params=params)
        errcode = errcode_of(data)
        if errcode in _CREDENTIAL_ERRCODES:
            raise PlatformRejectedError("gettoken: bad corp id or KF secret", PLATFORM, errcode)
        _raise_for_errcode(errcode, "gettoken")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("gettoken: no access_token in answer", PLATFORM)
        expires_in = data.get("expires_in", 7200)
        return token, float(expires_in) if isinstance(expires_in, int | float) else 7200.0

    async def _call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        json: Any = None,
    ) -> dict[str, Any]:
        return await request_json(
            http,
            method,
            self._api_base + path,
            platform=PLATFORM,
            what=path,
            client_timeout=self._timeout,
            params=params,
            json=json,
        )


def _raise_for_errcode(errcode: int, what: str) -> None:
    """Map a WeCom KF errcode to the project's errors (the one mapping for this client)."""
    if errcode == 0:
        return
    if errcode in _BUSY_ERRCODES:
        raise PlatformUnavailableError(f"{what} busy", PLATFORM, errcode)
    if errcode in _LIMIT_ERRCODES:
        # Recorded by the pipeline as a failed delivery; retrying cannot reopen the window.
        raise PlatformRejectedError(
            f"{what} refused: outside the 48 h window, over 5 replies, or session closed",
            PLATFORM,
            errcode,
        )
    if _is_kf_refusal(errcode):
        raise PlatformRejectedError(f"{what} refused by 微信客服", PLATFORM, errcode)
    raise PlatformRejectedError(f"{what} rejected", PLATFORM, errcode)
