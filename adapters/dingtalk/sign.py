"""DingTalk robot HTTP-mode header signature: pure functions, no I/O.

DingTalk signs every robot message POST with two headers, ``timestamp`` (milliseconds) and ``sign``
= base64(HMAC-SHA256(key=appSecret, msg=timestamp + "\\n" + appSecret)); a request is genuine when
the sign matches and the timestamp is within one hour of now. The sign covers the timestamp only,
not the body: HTTPS is what protects the body. Official page:
https://open.dingtalk.com/document/isvapp/receive-message (notes:
docs/protocols/dingtalk.md#robot-messages-over-http).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from bot.errors import SignatureError, StaleRequestError

# The documented window: |now - timestamp| <= 1 h.
MAX_SKEW_S = 3600
# Milliseconds since 1970 fit in 13 digits until 2286; bound the parse.
_MAX_TIMESTAMP_DIGITS = 16


def sign(timestamp_ms: str, app_secret: str) -> str:
    """Return the ``sign`` header DingTalk sends with this timestamp."""
    # The secret is both the HMAC key and part of the message, after a newline (doc above).
    message = f"{timestamp_ms}\n{app_secret}".encode()
    digest = hmac.new(app_secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(
    signature: str,
    timestamp_ms: str,
    *,
    app_secret: str,
    now: float,
    max_skew_s: float = MAX_SKEW_S,
) -> None:
    """Check the ``sign`` header and the timestamp window; return only if both pass.

    Raises:
        SignatureError: the sign does not match the timestamp and secret.
        StaleRequestError: the timestamp is not a number or is more than max_skew_s from now.
    """
    if not (timestamp_ms.isascii() and timestamp_ms.isdigit()) or (
        len(timestamp_ms) > _MAX_TIMESTAMP_DIGITS
    ):
        raise StaleRequestError("timestamp is not a number")
    computed = sign(timestamp_ms, app_secret)
    # Compare bytes: compare_digest refuses non-ASCII str, and `signature` is attacker input.
    if not hmac.compare_digest(computed.encode(), signature.encode("utf-8", "replace")):
        raise SignatureError("signature mismatch")
    if abs(now - int(timestamp_ms) / 1000) > max_skew_s:
        raise StaleRequestError("timestamp outside the accepted window")
