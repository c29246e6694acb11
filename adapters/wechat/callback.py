"""One app's WXBizMsgCrypt callback (WeCom app, 微信客服, Official Account safe mode, DingTalk
events): URL check and encrypted POST.

The signature covers the raw Encrypt/echostr text and is checked before anything is
decrypted; only `Encrypt` is read from the outer XML, the rest of it is unsigned
(docs/protocols/wechat-crypto.md). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.base import WebhookRequest, WebhookResult
from adapters.wechat import crypto, fields
from adapters.xml import parse_xml
from bot.domain import Platform
from bot.errors import PayloadError

MAX_SKEW_S = 300


class WeChatCallback:
    """Verifies and opens the callbacks of one app (its Token, EncodingAESKey, receive id).

    The WeCom app, 微信客服 and the Official Account's safe mode sign in seconds within
    5 minutes; DingTalk's event subscription signs in milliseconds within its own window.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        token: str,
        aes_key: str,
        receive_id: str,
        max_skew_s: int = MAX_SKEW_S,
        timestamp_ms: bool = False,
    ) -> None:
        self._platform = platform
        self.token = token
        # Decoded once, here: a bad key is a ConfigError at startup, not per request.
        self.aes_key = crypto.decode_aes_key(aes_key)
        self.receive_id = receive_id
        self._max_skew_s = max_skew_s
        self._timestamp_ms = timestamp_ms

    def open_signed(
        self, signature: str, *, timestamp: str, nonce: str, encrypted: str, now: float
    ) -> bytes:
        """Check `signature` over the raw `encrypted` text and the timestamp, then decrypt it."""
        crypto.verify(
            signature,
            token=self.token,
            timestamp=timestamp,
            nonce=nonce,
            encrypted=encrypted,
            now=now,
            max_skew_s=self._max_skew_s,
            timestamp_ms=self._timestamp_ms,
        )
        return crypto.decrypt(encrypted, aes_key=self.aes_key, receiver_id=self.receive_id)

    def open(self, query: Mapping[str, str], encrypted: str, *, now: float) -> bytes:
        """Check the query's msg_signature over `encrypted`, then decrypt it."""
        msg_signature, timestamp, nonce = fields.require(
            self._platform, query, "msg_signature", "timestamp", "nonce"
        )
        return self.open_signed(
            msg_signature, timestamp=timestamp, nonce=nonce, encrypted=encrypted, now=now
        )

    def verify_url(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """The GET URL check: answer the decrypted echostr."""
        # aiohttp has already URL-decoded the query ("+", "/", "=" arrive percent-encoded).
        (echostr,) = fields.require(self._platform, request.query, "echostr")
        plain = self.open(request.query, echostr, now=now)
        # The bare plaintext: no quotes, BOM or newline, or WeCom refuses the URL
        # (docs/protocols/pitfalls.md#pitfall-13-wecom-url-verification).
        return WebhookResult(status=200, body=plain, content_type="text/plain")

    def open_post(self, request: WebhookRequest, *, now: float) -> dict[str, str]:
        """The fields of an encrypted POST's inner XML."""
        fields.require(self._platform, request.query, "msg_signature", "timestamp", "nonce")
        (encrypted,) = fields.require(self._platform, parse_xml(request.body), "Encrypt")
        return parse_xml(self.open(request.query, encrypted, now=now))

    def refuse_method(self, method: str) -> PayloadError:
        return PayloadError(f"method {method} not allowed", self._platform)
