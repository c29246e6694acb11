"""`bot simulate feishu`: an encrypted, signed message event as Feishu sends it.

With `--stream`, what the bot then asks of Feishu is read back from the sandbox stand-in
(bot/web/sandbox/feishu.py: FEISHU_API_BASE=http://127.0.0.1:PORT/sandbox/feishu): the
streaming card's updates, one line each with the seconds since the message was sent, until
its streaming mode is switched off; or the plain reply.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.cli.simulate.common import configured, http_session, post_webhook
from bot.domain import DEFAULT_APP
from bot.llm import images
from bot.settings import FeishuSettings, Settings


async def feishu(
    base: str,
    settings: Settings,
    text: str,
    group: bool,
    mention: bool,
    user: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    stream: bool = False,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST an encrypted, signed ``im.message.receive_v1`` event as Feishu would; with
    `stream`, show the card (or reply) the bot sends, as the sandbox stand-in sees it.

    `image` / `voice` (trial mode only: Feishu serves a message's resources only for a real
    message) are uploaded to the stand-in (im/v1/images, im/v1/files) and sent as an image or
    audio message naming the key, so the worker fetches them as a user's; the reply is shown.
    """
    from adapters.feishu import simulate as feishu_simulate

    app = configured(
        settings, "feishu", app_name, FeishuSettings, "FEISHU_APP_ID, FEISHU_APP_SECRET, ..."
    )
    media = image or voice
    if media is not None and not (settings.core.sandbox and "/sandbox/feishu" in app.api_base):
        print(NO_MEDIA_STAND_IN, file=sys.stderr)
        return 2
    now = int(time.time())
    message_id = f"om_sim_{secrets.token_hex(12)}"
    open_id = user if user.startswith("ou_") else f"ou_{user}"
    sealing: dict[str, Any] = {
        "app_id": app.app_id,
        "verification_token": app.verification_token.get_secret_value(),
        "encrypt_key": app.encrypt_key.get_secret_value(),
        "user_open_id": open_id,
        "message_id": message_id,
        "chat_id": "oc_sim_group" if group else f"oc_sim_{user}",
        "event_id": secrets.token_hex(16),
        "now": now,
        "nonce": secrets.token_hex(8),
        "iv": os.urandom(16),
        "group": group,
        "mention_bot": mention,
        "bot_open_id": app.bot_open_id or "ou_bot",
    }
    async with http_session(wait_s) as http:
        if media is None:
            headers, body = feishu_simulate.build_message(text, **sealing)
        else:
            content = await _upload(http, app, media, image is not None)
            if content is None:
                return 1
            kind = "image" if image is not None else "audio"
            headers, body = feishu_simulate.build_media_message(kind, content, **sealing)
            stream = True  # the stand-in shows the reply: print it
        cursor = 0
        if stream:
            found = await _cursor(http, f"{base}{SENT}")
            if found is None:
                print(NO_STAND_IN, file=sys.stderr)
                return 2
            cursor = found
        sent_at = time.time()
        status, _ = await post_webhook(http, base, "feishu", app_name, body, headers=headers)
        if status != 200:
            return 1
        if stream:
            return await _watch(http, f"{base}{SENT}", cursor, message_id, sent_at, wait_s)
    print("accepted; the reply goes out through Feishu's im/v1/messages/{message_id}/reply API")
    return 0


async def _upload(
    http: aiohttp.ClientSession, app: FeishuSettings, path: Path, picture: bool
) -> dict[str, Any] | None:
    """The message content naming `path` uploaded to the stand-in; None (said why) when not."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    api = app.api_base.rstrip("/") + "/open-apis"
    credentials = {"app_id": app.app_id, "app_secret": app.app_secret.get_secret_value()}
    async with http.post(f"{api}/auth/v3/tenant_access_token/internal", json=credentials) as r:
        token = str((await r.json()).get("tenant_access_token") or "")
    form = aiohttp.FormData()
    if picture:
        form.add_field("image_type", "message")
        form.add_field("image", data, filename=path.name, content_type=images.sniff(data) or "")
    else:
        form.add_field("file_type", "opus")
        form.add_field("file_name", path.name)
        form.add_field("file", data, filename=path.name, content_type="audio/ogg")
    where = f"{api}/im/v1/{'images' if picture else 'files'}"
    async with http.post(where, data=form, headers={"Authorization": f"Bearer {token}"}) as r:
        answer = await r.json(content_type=None)
    found = (answer.get("data") or {}) if isinstance(answer, dict) else {}
    if picture and found.get("image_key"):
        return {"image_key": found["image_key"]}
    if not picture and found.get("file_key"):
        return {"file_key": found["file_key"], "duration": 1000}
    print(f"uploading {path.name} failed: {answer}", file=sys.stderr)
    return None


SENT = "/sandbox/feishu/sent"
NO_MEDIA_STAND_IN = (
    "--image/--voice with feishu need trial mode: BOT_SANDBOX=1 and "
    "FEISHU_API_BASE=http://127.0.0.1:PORT/sandbox/feishu (Feishu serves a message's files "
    "only for a real message)"
)
NO_STAND_IN = (
    "--stream reads the sandbox Feishu API: run the server with BOT_SANDBOX=1 (bot up sets it)"
    " and FEISHU_API_BASE=http://127.0.0.1:PORT/sandbox/feishu"
)
POLL_S = 0.2
# After a plain reply, further parts of a long answer come within this long.
SETTLE_S = 1.0


async def _cursor(http: aiohttp.ClientSession, url: str) -> int | None:
    """Where the stand-in's list ends now; None when there is no stand-in at `url`."""
    try:
        async with http.get(url, params={"since": "0"}) as resp:
            if resp.status != 200:
                return None
            return int((await resp.json())["next"])
    except (aiohttp.ClientError, ValueError, KeyError):
        return None


async def _watch(
    http: aiohttp.ClientSession,
    url: str,
    cursor: int,
    message_id: str,
    sent_at: float,
    wait_s: float,
) -> int:
    """Print the card updates (or plain replies) answering `message_id` as they arrive."""
    pending: dict[str, list[dict[str, Any]]] = {}  # card operations before we know its card
    ours = ""
    replied_at = 0.0
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        async with http.get(url, params={"since": str(cursor)}) as resp:
            data = await resp.json()
        cursor = int(data["next"])
        for event in data["events"]:
            if event.get("kind") == "card":
                pending.setdefault(str(event.get("card_id")), []).append(event)
            elif event.get("kind") == "message" and event.get("reply_to") == message_id:
                if event.get("card_id"):
                    ours = str(event["card_id"])
                    print(f"{_ago(event, sent_at)} card {ours} shown as the reply", flush=True)
                else:
                    print(f"{_ago(event, sent_at)} reply: {_line(event.get('text'))}", flush=True)
                    replied_at = time.monotonic()
        if ours:
            for event in pending.pop(ours, []):
                if event.get("op") == "close":
                    print(f"{_ago(event, sent_at)} [closed]", flush=True)
                    return 0
                print(f"{_ago(event, sent_at)} {_line(event.get('text'))}", flush=True)
        elif replied_at and time.monotonic() - replied_at > SETTLE_S:
            return 0  # answered in plain replies (no model streamed, or cards off)
        await asyncio.sleep(POLL_S)
    print(f"not finished within {wait_s:.0f}s", file=sys.stderr)
    return 1


def _ago(event: dict[str, Any], sent_at: float) -> str:
    return f"+{float(event.get('at') or sent_at) - sent_at:6.2f}s"


def _line(text: Any) -> str:
    return str(text or "").replace("\n", " ⏎ ")  # one line per update
