"""DingTalk (钉钉) enterprise-internal robot, HTTP mode: receive messages, reply actively.

Two kinds of POST reach the webhook (docs/protocols/dingtalk.md):
- robot messages (docs/protocols/dingtalk.md#robot-messages-over-http): headers
  ``timestamp`` (ms) + ``sign`` (HMAC, `dingtalk_sign`) and a JSON body with ``msgtype``;
  https://open.dingtalk.com/document/isvapp/receive-message
- encrypted event subscription (docs/protocols/dingtalk.md#event-subscription-over-http):
  query ``msg_signature``/``timeStamp``/``nonce`` and a body ``{"encrypt": …}`` sealed with the
  WXBizMsgCrypt scheme (docs/protocols/wechat-crypto.md), receive id = AppKey;
  https://open.dingtalk.com/document/orgapp/configure-event-subcription
Replies go out through the message's ``sessionWebhook`` while it lives, else through the robot
OpenAPI (docs/protocols/dingtalk.md#robot-openapi-and-access-token,
docs/protocols/pitfalls.md#pitfall-6-dingtalk-sessionwebhook-expiry). Stream mode
(docs/protocols/dingtalk.md#stream-mode) lives in `adapters.dingtalk.adapter.stream`, which feeds
its frames through `DingTalkAdapter.parse_robot_message`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters.base import WebhookRequest, WebhookResult
from adapters.dingtalk import events as dingtalk_events
from adapters.dingtalk import media as dingtalk_media
from adapters.dingtalk import sign as dingtalk_sign
from adapters.text import split_text
from adapters.tokens import TokenCache
from adapters.wechat import crypto as wechat_crypto
from bot.domain import DEFAULT_APP, Attachment, Content, InboundMessage, Platform, Reply
from bot.errors import (
    ConfigError,
    PayloadError,
    PlatformRejectedError,
    PlatformUnavailableError,
    SignatureError,
)

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
# Robot text/markdown content is capped at 20000 bytes; keep room for the "@staffId " mention.
MAX_TEXT_BYTES = 20000
_SPLIT_BYTES = MAX_TEXT_BYTES - 200
# Event callbacks: the robot's documented 1 h window; retries of failed pushes come later.
EVENT_MAX_SKEW_S = 3600
# Treat a sessionWebhook as gone this long before its stated expiry
# (docs/protocols/pitfalls.md#pitfall-6-dingtalk-sessionwebhook-expiry).
WEBHOOK_MARGIN_S = 60
# sessionWebhook answers 300001 "session 不存在" once the session is gone
# (docs/protocols/dingtalk.md#robot-messages-over-http).
_SESSION_GONE_ERRCODES = frozenset({300001})
# 130101: "send too fast" (robot flow control); worth a retry later.
_WEBHOOK_BUSY_ERRCODES = frozenset({130101})
_TITLE_CHARS = 20
_MARKDOWN_MARKS = re.compile(r"^[\s#>*\-+`]+|[*`_]+")
_OK_BODY = b"{}"
VOICE_TEXT = "[语音]"
_JSON = "application/json"


class _TokenRejectedError(Exception):
    """The OpenAPI refused the access token (internal: triggers one refresh)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _SessionGoneError(Exception):
    """The sessionWebhook no longer exists (internal: fall back to the OpenAPI)."""


def encrypted_answer(
    plaintext: str,
    *,
    token: str,
    aes_key: bytes,
    receive_id: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> dict[str, str]:
    """Seal the answer to an event callback: ``{"msg_signature","timeStamp","nonce","encrypt"}``.

    Pure: the glue passes a fresh ``os.urandom(16)`` prefix, timestamp and nonce
    (docs/protocols/dingtalk.md#event-subscription-over-http).
    """
    encrypted = wechat_crypto.encrypt(
        plaintext.encode("utf-8"),
        aes_key=aes_key,
        receiver_id=receive_id,
        random_prefix=random_prefix,
    )
    return {
        "msg_signature": wechat_crypto.signature(token, timestamp, nonce, encrypted),
        "timeStamp": timestamp,
        "nonce": nonce,
        "encrypt": encrypted,
    }


def markdown_title(text: str) -> str:
    """The markdown title DingTalk shows in notifications: the first line, bare and short."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = _MARKDOWN_MARKS.sub("", first).strip()
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1] + "…"
    return title or "回复"


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"{what} is not JSON", PLATFORM) from exc
    if not isinstance(data, dict):
        raise PayloadError(f"{what} is not a JSON object", PLATFORM)
    return data


def _str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if isinstance(value, bool | dict | list):
        raise PayloadError(f"{name} has the wrong type", PLATFORM)
    return str(value)


def _sent_at(create_at: str, now: float) -> datetime:
    # createAt is in milliseconds; an absent or odd value falls back to the arrival time.
    if create_at.isascii() and create_at.isdigit() and len(create_at) <= 16:
        return datetime.fromtimestamp(int(create_at) / 1000, UTC)
    return datetime.fromtimestamp(now, UTC)


def _content_text(body: Mapping[str, Any]) -> str | None:
    """The text a person wrote, by msgtype; None for types this adapter does not answer."""
    msg_type = body.get("msgtype")
    content = body.get("content")
    content = content if isinstance(content, dict) else {}
    if msg_type == "text":
        text = body.get("text")
        value = text.get("content") if isinstance(text, dict) else None
        return value if isinstance(value, str) else ""
    if msg_type == "richText":
        items = content.get("richText")
        items = items if isinstance(items, list) else []
        texts = [i["text"].strip() for i in items if isinstance(i, dict) and "text" in i]
        return "\n".join(t for t in texts if isinstance(t, str) and t)
    if msg_type == "audio":
        # DingTalk transcribes voice messages itself
        # (docs/protocols/dingtalk.md#mentions-and-message-types).
        recognition = content.get("recognition")
        return recognition if isinstance(recognition, str) and recognition else VOICE_TEXT
    return None


def _media(body: Mapping[str, Any]) -> dingtalk_media.Described | None:
    """Pictures, files, videos, and the images of a richText message (adapters.dingtalk.media).

    Answered, not dropped: the placeholder text gets a polite answer, and the worker fetches
    the media (bot/pipeline/media.py) so a person taking over can see it.
    """
    msg_type = body.get("msgtype")
    content = body.get("content")
    content = content if isinstance(content, dict) else {}
    if msg_type == "richText":
        items = content.get("richText")
        images = dingtalk_media.rich_text_images(items if isinstance(items, list) else [])
        if not images:
            return None
        return dingtalk_media.Described(text="[图片]", content=Content.IMAGE, attachments=images)
    return dingtalk_media.describe(str(msg_type or ""), content)


class DingTalkAdapter:
    """One DingTalk app's robot: its HTTP message URL, event subscription and send APIs."""

    platform = PLATFORM

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        robot_code: str = "",
        token: str = "",
        aes_key: str = "",
        api_base: str,
        oapi_base: str = "https://oapi.dingtalk.com",
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
        group_welcome_text: str = "",
    ) -> None:
        missing = [
            name
            for name, value in (
                ("app_key", app_key),
                ("app_secret", app_secret),
                ("api_base", api_base),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"DingTalk app {app!r} is missing {', '.join(missing)}")
        if bool(token) != bool(aes_key):
            raise ConfigError(f"DingTalk app {app!r}: event subscription needs token and aes_key")
        self.app = app
        self._app_key = app_key
        self._app_secret = app_secret
        # Internal-app robots use the AppKey as their robot code
        # (docs/protocols/dingtalk.md#robot-openapi-and-access-token).
        self._robot_code = robot_code or app_key
        self._token = token
        # Decoded once, here: a bad key is a ConfigError at startup, not per request.
        self._aes_key = wechat_crypto.decode_aes_key(aes_key) if aes_key else b""
        self._api_base = api_base.rstrip("/")
        self.api_base = self._api_base  # media downloads may also come from this host (tests)
        self._oapi_base = oapi_base.rstrip("/")
        # None: no shared cache, a fresh token per send (CLI tools and tests only).
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=http_timeout_s)
        # Pictures/files/videos users send are fetched by the worker; 0: not fetched.
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s
        self._group_welcome_text = group_welcome_text

    @property
    def token_key(self) -> str:
        """The Redis key of this app's access token."""
        return f"token:{PLATFORM.value}:{self.app}"

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Accept a signed robot message or an encrypted event callback; no network I/O."""
        if request.method != "POST":
            raise PayloadError(f"method {request.method} not allowed", PLATFORM)
        # Robot POSTs carry the sign headers; event POSTs carry the signature in the query.
        if "sign" in request.headers or "timestamp" in request.headers:
            return self._robot_message(request, now=now)
        if any(name in request.query for name in ("msg_signature", "signature")):
            return self._event(request, now=now)
        raise SignatureError("missing sign/timestamp headers", PLATFORM)

    def _trusted_webhook(self, url: str) -> str:
        """The sessionWebhook if it points at DingTalk's own host, else "" (use the OpenAPI).

        The robot `sign` covers only the timestamp, not the body: a replayed header pair with
        a forged body must not make us post replies to a host of the sender's choosing.
        """
        if not url:
            return ""
        got, want = urlsplit(url), urlsplit(self._oapi_base)
        if (got.scheme, got.hostname) == (want.scheme, want.hostname):
            return url
        log.warning("dingtalk %s: ignoring a sessionWebhook on an unexpected host", self.app)
        return ""

    def _robot_message(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        signature = request.headers.get("sign", "")
        timestamp = request.headers.get("timestamp", "")
        if not signature or not timestamp:
            raise SignatureError("missing sign or timestamp header", PLATFORM)
        # Checked before the body is parsed: nothing unsigned is looked at.
        dingtalk_sign.verify(signature, timestamp, app_secret=self._app_secret, now=now)
        body = _json_object(request.body, "body")
        message = self.parse_robot_message(body, now=now)
        # Answer at once with an empty object: the reply goes out actively, later.
        return WebhookResult(status=200, body=_OK_BODY, content_type=_JSON, message=message)

    def parse_robot_message(self, body: Mapping[str, Any], *, now: float) -> InboundMessage | None:
        """A robot message body (also a Stream CALLBACK's `data`) as a message.

        Layouts: docs/protocols/dingtalk.md#robot-messages-over-http and #stream-mode.

        None for what the robot does not answer: other msgtypes, empty text, and group
        messages that do not @-mention it. Raises PayloadError for a malformed body.
        """
        msg_id = _str(body, "msgId")
        if not msg_id:
            raise PayloadError("missing msgId", PLATFORM)
        msg_type = _str(body, "msgtype")
        text = _content_text(body)
        media = _media(body)
        typed: dict[str, Any] = {}
        if media is not None:
            typed["attachments"] = media.attachments
            if not (text or "").strip():
                # A picture/file/video, or a richText of images only: a placeholder answered
                # politely. Text with images: the text is answered, the images only fetched.
                text = media.text
                typed.update(content=media.content, placeholder=True)
        elif msg_type == "audio":
            typed["content"] = Content.VOICE
            # DingTalk's own transcript is the text; without one, the placeholder.
            typed["placeholder"] = text == VOICE_TEXT
        if text is None:
            log.info("dingtalk %s %s ignored msgtype=%s", self.app, msg_id, msg_type)
            return None
        is_group = _str(body, "conversationType") == "2"
        # In groups the robot answers only when @-mentioned
        # (docs/protocols/dingtalk.md#mentions-and-message-types).
        if is_group and body.get("isInAtList") is not True:
            log.info("dingtalk %s %s ignored: group message without @robot", self.app, msg_id)
            return None
        # The @robot name is already cut out, leaving whitespace: strip
        # (docs/protocols/dingtalk.md#robot-messages-over-http).
        text = text.strip()
        if not text:
            log.info("dingtalk %s %s ignored: empty %s", self.app, msg_id, msg_type)
            return None
        conversation_id = _str(body, "conversationId")
        staff_id = _str(body, "senderStaffId")
        sender_id = staff_id or _str(body, "senderId")
        if not conversation_id or not sender_id:
            raise PayloadError("missing conversationId or sender", PLATFORM)
        route = {
            "sessionWebhook": self._trusted_webhook(_str(body, "sessionWebhook")),
            "sessionWebhookExpiredTime": _str(body, "sessionWebhookExpiredTime"),
            "conversationType": _str(body, "conversationType") or "1",
            "conversationId": conversation_id,
            "senderStaffId": staff_id,
            "robotCode": _str(body, "robotCode") or self._robot_code,
        }
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            event_id=msg_id,
            conversation_id=conversation_id,
            sender_id=sender_id,
            text=text,
            is_group=is_group,
            sent_at=_sent_at(_str(body, "createAt"), now),
            route=route,
            **typed,
        )

    def _event(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        if not self._token:
            raise PayloadError("event subscription is not configured", PLATFORM)
        query = request.query
        # Newer consoles send msg_signature/timeStamp, older ones signature/timestamp
        # (docs/protocols/dingtalk.md#event-subscription-over-http).
        signature = query.get("msg_signature") or query.get("signature") or ""
        timestamp = query.get("timeStamp") or query.get("timestamp") or ""
        nonce = query.get("nonce", "")
        if not (signature and timestamp and nonce):
            raise PayloadError("missing msg_signature, timeStamp or nonce", PLATFORM)
        body = _json_object(request.body, "body")
        encrypted = body.get("encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise PayloadError("missing encrypt", PLATFORM)
        # Signature over the raw encrypt text, before decrypting; timestamps in ms
        # (docs/protocols/dingtalk.md#event-subscription-over-http).
        wechat_crypto.verify(
            signature,
            token=self._token,
            timestamp=timestamp,
            nonce=nonce,
            encrypted=encrypted,
            now=now,
            max_skew_s=EVENT_MAX_SKEW_S,
            timestamp_ms=True,
        )
        plain = wechat_crypto.decrypt(encrypted, aes_key=self._aes_key, receiver_id=self._app_key)
        event = _json_object(plain, "event")
        event_type = _str(event, "EventType")
        # Every event is queued to be recorded (bot/pipeline/events.py); none gets an answer.
        message = dingtalk_events.event_message(event, plain=plain, app=self.app, now=now)
        log.info("dingtalk %s event %s %s received", self.app, event_type, message.event_id)
        answer = encrypted_answer(
            "success",
            token=self._token,
            aes_key=self._aes_key,
            receive_id=self._app_key,
            timestamp=str(int(now * 1000)),
            nonce=os.urandom(6).hex(),
            random_prefix=os.urandom(wechat_crypto.RANDOM_BYTES),
        )
        return WebhookResult(
            status=200, body=json.dumps(answer).encode(), content_type=_JSON, message=message
        )

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Keep Markdown (DingTalk renders it) and cut into parts under the 20000-byte cap."""
        return split_text(text, _SPLIT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Send one markdown part; return OpenAPI's processQueryKey, or "" via sessionWebhook."""
        webhook = reply.route.get("sessionWebhook", "")
        expires = reply.route.get("sessionWebhookExpiredTime", "")
        live = (
            bool(webhook)
            and expires.isdigit()
            and int(expires) / 1000 - WEBHOOK_MARGIN_S > time.time()
        )
        if live:
            try:
                await self._send_webhook(http, webhook, reply)
            except _SessionGoneError:
                log.info(
                    "dingtalk %s reply %s: session gone, using the OpenAPI",
                    self.app,
                    reply.in_reply_to,
                )
            else:
                log.info("dingtalk %s sent reply to %s via session", self.app, reply.in_reply_to)
                return ""
        key = await self._send_openapi(http, reply)
        log.info(
            "dingtalk %s sent reply to %s processQueryKey=%s", self.app, reply.in_reply_to, key
        )
        return key

    async def _send_webhook(self, http: aiohttp.ClientSession, url: str, reply: Reply) -> None:
        staff_id = reply.route.get("senderStaffId", "")
        text = reply.text
        payload: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": markdown_title(text), "text": text},
        }
        if reply.is_group and staff_id:
            # The at list only notifies; the "@staffId" in the text is what renders the mention.
            payload["markdown"]["text"] = f"@{staff_id} {text}"
            payload["at"] = {"atUserIds": [staff_id]}
        # The URL holds a session credential: errors name the host only.
        what = "sessionWebhook"
        try:
            async with http.post(url, json=payload, timeout=self._timeout) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise PlatformUnavailableError(f"{what} answered", PLATFORM, status=resp.status)
                if resp.status != 200:
                    raise PlatformRejectedError(f"{what} answered", PLATFORM, status=resp.status)
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailableError(
                f"{what} unreachable ({type(exc).__name__})", PLATFORM
            ) from exc
        except ValueError as exc:
            raise PlatformUnavailableError(f"{what} answered non-JSON", PLATFORM) from exc
        errcode = data.get("errcode", 0) if isinstance(data, dict) else -1
        if errcode == 0:
            return
        if errcode in _SESSION_GONE_ERRCODES:
            raise _SessionGoneError
        if errcode in _WEBHOOK_BUSY_ERRCODES or not isinstance(errcode, int):
            raise PlatformUnavailableError(f"{what} busy", PLATFORM, errcode=_int(errcode))
        raise PlatformRejectedError(f"{what} rejected", PLATFORM, errcode=errcode)

    async def _send_openapi(self, http: aiohttp.ClientSession, reply: Reply) -> str:
        robot_code = reply.route.get("robotCode") or self._robot_code
        msg_param = json.dumps(
            {"title": markdown_title(reply.text), "text": reply.text}, ensure_ascii=False
        )
        if reply.is_group:
            path = "/v1.0/robot/groupMessages/send"
            payload: dict[str, Any] = {
                "robotCode": robot_code,
                "openConversationId": reply.route.get("conversationId") or reply.conversation_id,
                "msgKey": "sampleMarkdown",
                "msgParam": msg_param,
            }
        else:
            staff_id = reply.route.get("senderStaffId") or reply.recipient_id
            path = "/v1.0/robot/oToMessages/batchSend"
            payload = {
                "robotCode": robot_code,
                "userIds": [staff_id],
                "msgKey": "sampleMarkdown",
                "msgParam": msg_param,
            }
        data = await self._call_with_token(http, path, payload)
        if data.get("flowControlledStaffIdList"):
            raise PlatformUnavailableError(f"{path} flow-controlled", PLATFORM)
        if data.get("invalidStaffIdList"):
            raise PlatformRejectedError(f"{path}: recipient invalid", PLATFORM)
        return str(data.get("processQueryKey", ""))

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> tuple[int, str]:
        """Save one attachment: its downloadCode → a temporary URL → the bytes (capped)."""
        url = await self.download_url(http, attachment.ref, message.route.get("robotCode", ""))
        return await dingtalk_media.download(
            http,
            url,
            dest,
            api_base=self.api_base,
            max_bytes=self.media_max_bytes,
            timeout_s=self.media_timeout_s,
        )

    def follow_up(self, notice: InboundMessage) -> InboundMessage | None:
        """The group's welcome turn after the robot joined it (DINGTALK_GROUP_WELCOME_TEXT)."""
        if not self._group_welcome_text:
            return None
        return dingtalk_events.group_welcome(notice)

    async def download_url(
        self, http: aiohttp.ClientSession, download_code: str, robot_code: str = ""
    ) -> str:
        """Exchange a message's downloadCode for its temporary downloadUrl.

        docs/protocols/dingtalk.md#media-download
        """
        payload = {"downloadCode": download_code, "robotCode": robot_code or self._robot_code}
        data = await self._call_with_token(http, "/v1.0/robot/messageFiles/download", payload)
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise PlatformRejectedError("messageFiles/download: no downloadUrl", PLATFORM)
        return url

    async def _call_with_token(
        self, http: aiohttp.ClientSession, path: str, payload: Any
    ) -> dict[str, Any]:
        """`_call` with the app's access token, refreshed once if the API refuses it."""
        token = await self._access_token(http)
        try:
            return await self._call(http, path, payload, token=token)
        except _TokenRejectedError as exc:
            log.info("dingtalk %s token refused (%s), refreshing", self.app, exc.code)
            if self._tokens is not None:
                await self._tokens.invalidate(self.token_key, token)
            token = await self._access_token(http)
            try:
                return await self._call(http, path, payload, token=token)
            except _TokenRejectedError as again:
                raise PlatformUnavailableError(
                    f"access token refused twice ({again.code})", PLATFORM, status=401
                ) from again

    async def _access_token(self, http: aiohttp.ClientSession) -> str:
        async def fetch() -> tuple[str, float]:
            return await self._fetch_token(http)

        if self._tokens is None:
            return (await fetch())[0]
        return await self._tokens.get(self.token_key, fetch)

    async def _fetch_token(self, http: aiohttp.ClientSession) -> tuple[str, float]:
        payload = {"appKey": self._app_key, "appSecret": self._app_secret}
        try:
            data = await self._call(http, "/v1.0/oauth2/accessToken", payload, token=None)
        except _TokenRejectedError as exc:
            raise PlatformRejectedError(
                f"accessToken: bad app key or secret ({exc.code})", PLATFORM
            ) from exc
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("accessToken: no accessToken in answer", PLATFORM)
        expire_in = data.get("expireIn", 7200)
        return token, float(expire_in) if isinstance(expire_in, int | float) else 7200.0

    async def _call(
        self, http: aiohttp.ClientSession, path: str, payload: Any, *, token: str | None
    ) -> dict[str, Any]:
        """POST to the new OpenAPI; the one mapping of its status/code to our errors."""
        headers = {"x-acs-dingtalk-access-token": token} if token is not None else {}
        try:
            async with http.post(
                self._api_base + path, json=payload, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailableError(
                f"{path} unreachable ({type(exc).__name__})", PLATFORM
            ) from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        # Errors come as {"code","message","requestid"} with a 4xx/5xx status
        # (docs/protocols/dingtalk.md#robot-openapi-and-access-token).
        code = str(data.get("code", "")) if isinstance(data, dict) else ""
        if status >= 500 or status == 429:
            raise PlatformUnavailableError(f"{path} answered {code}", PLATFORM, status=status)
        if status in (401, 403) and (status == 401 or _is_token_code(code)):
            raise _TokenRejectedError(code or str(status))
        if status != 200:
            raise PlatformRejectedError(f"{path} answered {code}", PLATFORM, status=status)
        if not isinstance(data, dict):
            # A proxy's HTML page, say: not DingTalk's answer, so try again later.
            raise PlatformUnavailableError(f"{path} answered non-object JSON", PLATFORM)
        return data


def _is_token_code(code: str) -> bool:
    lowered = code.lower()
    return "token" in lowered or "authentication" in lowered


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
