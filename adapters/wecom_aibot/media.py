"""Pictures and files members send to a WeCom 智能机器人: named in the callback, fetched later.

An `image` message carries `image.url`, a `file` message `file.url`, a `mixed` message
`image` items among its `msg_item`s (doc 100719). Each URL serves the file **encrypted**,
for a few minutes: AES-256-CBC with the bot's EncodingAESKey (decoded, 32 bytes), the IV its
first 16 bytes, PKCS#7 padding to a multiple of 32 — the callback scheme without the random
prefix, length and receive id (docs/protocols/wecom-aibot.md, "Media"). The worker fetches a URL
with the shared download guard (adapters/media.py: no redirects, size cap, timeout) only
from the hosts in WECOM_AIBOT_MEDIA_HOSTS, then decrypts it beside where it lands; what
cannot be decrypted is refused, never handed on.

In long-connection mode each picture or file names its own key instead (`image.aeskey`,
`file.aeskey`, a mixed item's `image.aeskey`): base64 of 32 bytes, the same cipher with that
key (as the official SDK @wecom/aibot-node-sdk decrypts them). It travels with the
attachment (`Attachment.key`) to the worker, which decodes it with `message_key` before
fetching.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from adapters import media
from adapters.wechat import crypto
from bot.domain import Attachment, Content, Platform
from bot.errors import DecryptError, MediaTooLargeError, PayloadError

PLATFORM = Platform.WECOM_AIBOT
MAX_ITEMS = 4  # at most this many attachments of one message are fetched
_AES_BLOCK = 16
_KINDS = {"image": Content.IMAGE, "file": Content.FILE}
# Where WeCom serves the AI bot's files (Tencent COS buckets and WeCom's own hosts; the
# official page names no host: unconfirmed, so it is a setting).
DEFAULT_HOSTS = "myqcloud.com,qpic.cn,weixin.qq.com"


def encrypt_file(plain: bytes, aes_key: bytes) -> bytes:
    """What WeCom serves for `plain` (the fake servers and `bot simulate` use it)."""
    return crypto.seal_blocks(plain, aes_key)


def decrypt_file(data: bytes, aes_key: bytes) -> bytes:
    """The file inside what a media URL served; PayloadError when it is not one of ours."""
    if not data or len(data) % _AES_BLOCK:
        raise PayloadError("media is not AES-encrypted (length)", PLATFORM)
    try:
        return crypto.open_blocks(data, aes_key)
    except DecryptError as exc:
        raise PayloadError("media does not decrypt with its key (padding)", PLATFORM) from exc


def message_key(aeskey: str) -> bytes:
    """The 32-byte AES key a long-connection message names for its file; PayloadError (never
    naming the key) when it is missing, not base64 or not 32 bytes.

    The SDKs decode it as standard base64; URL-safe letters and missing padding are taken too,
    as a key copied through another system may have them.
    """
    text = "".join(aeskey.split())
    if not text:
        raise PayloadError("media came without its aeskey", PLATFORM)
    text = text.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("media aeskey is not base64", PLATFORM) from exc
    if len(key) != crypto.KEY_BYTES:
        raise PayloadError(f"media aeskey is {len(key)} bytes, not 32", PLATFORM)
    return key


def attachments(
    data: Mapping[str, Any], msgtype: str, *, keyed: bool = False
) -> tuple[Attachment, ...]:
    """The pictures and files a message callback names (mixed: its image items); `keyed`
    (long-connection mode): each with the `aeskey` it names, "" when none."""
    if msgtype == "mixed":
        mixed = data.get("mixed")
        items = mixed.get("msg_item") if isinstance(mixed, dict) else None
        parts = [p for p in items or () if isinstance(p, dict)]
    else:
        parts = [{**data, "msgtype": msgtype}]
    found: list[Attachment] = []
    for part in parts:
        name = part.get("msgtype")
        kind = _KINDS.get(name) if isinstance(name, str) else None
        body = part.get(name) if kind is not None else None
        url = body.get("url") if isinstance(body, dict) else None
        if kind is not None and isinstance(url, str) and url.strip():
            aeskey = body.get("aeskey") if keyed and isinstance(body, dict) else None
            key = aeskey if isinstance(aeskey, str) else ""
            found.append(Attachment(kind, url.strip(), key=key))
    return tuple(found[:MAX_ITEMS])


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    aes_key: bytes,
    hosts: Sequence[str],
    max_bytes: int,
    timeout_s: float,
) -> media.Fetched:
    """Fetch `url`, decrypt it into `dest`: the file's size, the content type and name served.

    The cap holds for what is downloaded (the file plus at most 32 bytes of padding).
    """
    sealed = dest.with_name(dest.name + ".enc")
    try:
        sealed_file = await media.download(
            http,
            url,
            sealed,
            allowed=lambda u: media.allowed_url(u, hosts),
            platform=PLATFORM,
            max_bytes=max_bytes + crypto.PAD_BLOCK,
            timeout_s=timeout_s,
        )
        plain = decrypt_file(sealed.read_bytes(), aes_key)
    finally:
        sealed.unlink(missing_ok=True)
    if len(plain) > max_bytes:
        raise MediaTooLargeError(f"media over {max_bytes} bytes", PLATFORM)
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(plain)
    os.replace(part, dest)
    return media.Fetched(len(plain), sealed_file.content_type, name=sealed_file.name)
