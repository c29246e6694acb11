"""WeCom (企业微信) self-built application: verify and decrypt callbacks, send text replies.

Protocol notes: docs/protocols/wecom.md; callbacks use the WXBizMsgCrypt scheme
(docs/protocols/wechat-crypto.md) with receive id = CorpID. Official pages: 接收消息与事件
https://developer.work.weixin.qq.com/document/path/90238, 发送应用消息
https://developer.work.weixin.qq.com/document/path/90236, 获取access_token
https://developer.work.weixin.qq.com/document/path/91039.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp

from adapters.base import WebhookRequest, WebhookResult
from adapters.http import TokenRejectedError as _TokenRejectedError
from adapters.http import errcode_of, request_json
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import fields as wechat_fields
from adapters.xml import parse_xml
from bot.domain import DEFAULT_APP, InboundMessage, MessageKind, Platform, Reply
from bot.errors import (
    ConfigError,
    PayloadError,
    PlatformRejectedError,
    PlatformUnavailableError,
)

log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM
# Text content is capped at 2048 bytes; WeCom truncates longer text silently
# (docs/protocols/wecom.md#sending-messages).
MAX_TEXT_BYTES = 2048
MAX_SKEW_S = 300
# The token was refused: drop it, fetch a new one, retry once (docs/protocols/wecom.md#access-token,
# docs/protocols/pitfalls.md#pitfall-4-several-workers-refreshing-one-token).
_TOKEN_ERRCODES = frozenset({40001, 40014, 41001, 42001})
# -1 system busy; 45009 / 45011 frequency limits; 45033 concurrency limit: worth a retry later.
_BUSY_ERRCODES = frozenset({-1, 45009, 45011, 45033})
# gettoken: 40013 invalid corpid, 40001 invalid secret. Retrying cannot fix either.
_CREDENTIAL_ERRCODES = frozenset({40001, 40013})


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    return wechat_fields.require(PLATFORM, fields, *names)


def _sent_at(create_time: str) -> datetime:
    return wechat_fields.sent_at(PLATFORM, create_time)


class WeComAdapter:
    """One WeCom self-built application: its callback URL and its message/send API."""

    platform = PLATFORM

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
    ) -> None:
        missing = [
            name
            for name, value in (
                ("corp_id", corp_id),
                ("agent_id", agent_id),
                ("token", token),
                ("secret", secret),
                ("api_base", api_base),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"WeCom app {app!r} is missing {', '.join(missing)}")
        if not agent_id.isdigit():
            raise ConfigError(f"WeCom app {app!r}: agent_id must be the numeric AgentId")
        self.app = app
        self._corp_id = corp_id
        self._agent_id = agent_id
        self._token = token
        # Decoded once, here: a bad key is a ConfigError at startup, not per request.
        self._aes_key = wechat_crypto.decode_aes_key(aes_key)
        self._secret = secret
        self._api_base = api_base.rstrip("/")
        # None: no shared cache, a fresh token per send (CLI tools and tests only).
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=http_timeout_s)

    @property
    def token_key(self) -> str:
        """The Redis key of this app's access token."""
        return f"token:{PLATFORM.value}:{self.app}"

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer URL verification (GET) or accept one encrypted callback (POST); no I/O."""
        if request.method == "GET":
            return self._verify_url(request, now=now)
        if request.method == "POST":
            return self._accept(request, now=now)
        raise PayloadError(f"method {request.method} not allowed", PLATFORM)

    def _open(self, query: Mapping[str, str], encrypted: str, *, now: float) -> bytes:
        msg_signature, timestamp, nonce = _require(query, "msg_signature", "timestamp", "nonce")
        # Signature over the raw Encrypt/echostr text, before anything is decrypted
        # (docs/protocols/wechat-crypto.md).
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

    def _verify_url(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        # aiohttp has already URL-decoded the query ("+", "/", "=" arrive percent-encoded).
        (echostr,) = _require(request.query, "echostr")
        plain = self._open(request.query, echostr, now=now)
        # The bare plaintext: no quotes, BOM or newline, or WeCom refuses the URL
        # (docs/protocols/pitfalls.md#pitfall-13-wecom-url-verification).
        return WebhookResult(status=200, body=plain, content_type="text/plain")

    def _accept(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        _require(request.query, "msg_signature", "timestamp", "nonce")
        # Only Encrypt is trusted from the outer XML; the rest is unsigned.
        (encrypted,) = _require(parse_xml(request.body), "Encrypt")
        fields = parse_xml(self._open(request.query, encrypted, now=now))
        return WebhookResult(status=200, body=b"", message=self._message(fields))

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
        event = fields.get("Event", "")
        if msg_type == "event" and event == "enter_agent":
            sender, create_time = _require(fields, "FromUserName", "CreateTime")
            return InboundMessage(
                platform=PLATFORM,
                app=self.app,
                # Events carry no MsgId; docs/protocols/wecom.md#deadline-retries-and-dedupe dedupes
                # on FromUserName + CreateTime.
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
        token = await self._access_token(http)
        try:
            data = await self._post_message(http, token, payload)
        except _TokenRejectedError as exc:
            log.info("wecom %s token refused (errcode %s), refreshing", self.app, exc.errcode)
            if self._tokens is not None:
                await self._tokens.invalidate(self.token_key, token)
            token = await self._access_token(http)
            try:
                data = await self._post_message(http, token, payload)
            except _TokenRejectedError as again:
                raise PlatformUnavailableError(
                    "access token refused twice", PLATFORM, errcode=again.errcode
                ) from again
        if data.get("invaliduser"):
            log.warning("wecom %s reply %s: recipient invalid", self.app, reply.in_reply_to)
        msg_id = str(data.get("msgid", ""))
        log.info("wecom %s sent reply to %s msgid=%s", self.app, reply.in_reply_to, msg_id)
        return msg_id

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
            raise PlatformRejectedError("gettoken: bad corp id or secret", PLATFORM, errcode)
        _raise_for_errcode(errcode, "gettoken")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("gettoken: no access_token in answer", PLATFORM)
        expires_in = data.get("expires_in", 7200)
        return token, float(expires_in) if isinstance(expires_in, int | float) else 7200.0

    async def _post_message(
        self, http: aiohttp.ClientSession, token: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        data = await self._call(
            http, "POST", "/cgi-bin/message/send", params={"access_token": token}, json=payload
        )
        errcode = errcode_of(data)
        if errcode in _TOKEN_ERRCODES:
            raise _TokenRejectedError(errcode)
        _raise_for_errcode(errcode, "message/send")
        return data

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
    """Map a WeCom errcode to the project's errors (the one mapping for this client)."""
    if errcode == 0:
        return
    if errcode in _BUSY_ERRCODES:
        raise PlatformUnavailableError(f"{what} busy", PLATFORM, errcode)
    raise PlatformRejectedError(f"{what} rejected", PLATFORM, errcode)
