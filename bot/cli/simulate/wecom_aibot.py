"""`bot simulate wecom_aibot`: a signed, encrypted 智能机器人 message callback, then refresh
callbacks as WeCom makes them, printing the answer as it grows until it is finished.

With `--stream`, each refresh that shows something new is a line of its own: the time since
the message was sent and the whole text as WeCom would show it then (the first line is the
customer's wait for the first words).

With `--image FILE` (trial mode: BOT_SANDBOX=1), the picture is encrypted with the bot's
EncodingAESKey as WeCom does, put on the server's stand-in (bot/web/sandbox/wecom_aibot.py)
and sent as a 1:1 `image` message naming that URL, so the worker fetches and decrypts it.

With `--voice FILE "words"`, a 1:1 `voice` message whose transcript is the words: WeCom gives
the AI bot only its own transcript of a voice message, never the recording, so the file is
not sent; without words one line says so (`VOICE_NEEDS_WORDS`)."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from adapters.wechat import crypto
from adapters.wecom_aibot import media as aibot_media
from adapters.wecom_aibot import simulate as aibot_simulate
from bot.cli.simulate.common import configured, fresh_stamp, hook, http_session
from bot.domain import DEFAULT_APP
from bot.settings import Settings, WeComAiBotSettings

JSON = {"Content-Type": "application/json"}
REFRESH_EVERY_S = 0.5
STAND_IN = "/sandbox/wecom_aibot/media"
NO_STAND_IN = (
    "--image with wecom_aibot needs trial mode: run the server with BOT_SANDBOX=1 (bot up sets "
    "it); WeCom serves a message's pictures only for a real message"
)
VOICE_NEEDS_WORDS = (
    "wecom_aibot: WeCom gives the AI bot its own transcript of a voice message, never the "
    'recording; say the words to send as that transcript: --voice FILE "怎么退货"'
)
VOICE_SENT = "voice sent as WeCom's transcript (the recording itself never reaches the bot)"


async def wecom_aibot(
    base: str,
    settings: Settings,
    user: str,
    text: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    group: bool = False,
    stream: bool = False,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST the message, then refresh its stream until `finish` (exit 1 when it never is).

    `image`: a 1:1 picture message instead, its picture on the server's stand-in (see module).
    `voice`: a 1:1 voice message whose transcript is `text` (the file is not sent, see module).
    """
    if voice is not None and not text.strip():
        print(VOICE_NEEDS_WORDS, file=sys.stderr)
        return 2
    bot = configured(
        settings,
        "wecom_aibot",
        app_name,
        WeComAiBotSettings,
        "WECOM_AIBOT_TOKEN, WECOM_AIBOT_AES_KEY",
    )
    token, aes_key = bot.token.get_secret_value(), bot.aes_key.get_secret_value()
    chatid = "wrSimulatedGroup" if group else ""
    ids = {"user": user, "chatid": chatid, "bot_id": bot.bot_id or "AIBOTID"}
    msgid = secrets.token_hex(12)
    message = aibot_simulate.text_message(f"@bot {text}" if group else text, msgid=msgid, **ids)
    url = hook(base, "wecom_aibot", app_name)

    async def post(data: dict[str, Any]) -> dict[str, Any] | None:
        query, body = aibot_simulate.build_post(
            data, token=token, aes_key=aes_key, **fresh_stamp(int(time.time()))
        )
        async with http.post(url, params=query, data=body, headers=JSON) as resp:
            raw = await resp.read()
            if resp.status != 200:
                print(f"POST {url} -> {resp.status} {raw[:200]!r}", file=sys.stderr)
                return None
        return aibot_simulate.open_reply(raw, token=token, aes_key=aes_key) if raw else None

    async with http_session(wait_s) as http:
        if image is not None:
            sealed = await _sealed(image, aes_key)
            where = None if sealed is None else await _put(http, base, sealed)
            if where is None:
                return 2 if sealed is not None else 1
            ids["chatid"] = ""  # WeCom delivers pictures in 1:1 chats only
            message = aibot_simulate.media_message("image", where, msgid=msgid, user=user,
                                                   bot_id=ids["bot_id"])  # fmt: skip
        elif voice is not None:
            ids["chatid"] = ""  # WeCom delivers voice in 1:1 chats only
            message = aibot_simulate.voice_message(
                text, msgid=msgid, user=user, bot_id=ids["bot_id"]
            )
            print(VOICE_SENT)
        started = time.monotonic()
        first = await post(message)
        if first is None or first.get("msgtype") != "stream":
            print(f"no stream in the answer: {first!r}", file=sys.stderr)
            return 1
        stream_id = first["stream"]["id"]
        print(f"stream {stream_id} opened")
        shown = ""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(REFRESH_EVERY_S)
            answer = await post(
                aibot_simulate.refresh(stream_id, msgid=secrets.token_hex(12), **ids)
            )
            if answer is None:
                return 1
            content, finished = answer["stream"]["content"], answer["stream"]["finish"]
            if stream:
                if content != shown or finished:
                    mark = " [finish]" if finished else ""
                    line = content.replace("\n", " ⏎ ")  # one line per update
                    print(f"+{time.monotonic() - started:6.2f}s{mark} {line}", flush=True)
                    shown = content
                if finished:
                    return 0
                continue
            if content != shown:
                # The whole text so far each time; print what is new, or all of it after a reset.
                print(
                    content[len(shown) :] if content.startswith(shown) else f"\n{content}", end=""
                )
                sys.stdout.flush()
                shown = content
            if finished:
                print("\n[finish]")
                return 0
    print(f"\nnot finished within {wait_s:.0f}s", file=sys.stderr)
    return 1


async def _sealed(path: Path, aes_key: str) -> bytes | None:
    """The picture encrypted as WeCom serves it; None (said why) when it cannot be read."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return aibot_media.encrypt_file(data, crypto.decode_aes_key(aes_key))


async def _put(http: aiohttp.ClientSession, base: str, sealed: bytes) -> str | None:
    """The URL the stand-in serves `sealed` at; None (said why) without a stand-in."""
    try:
        async with http.post(f"{base}{STAND_IN}", data=sealed) as resp:
            if resp.status == 200:
                return str((await resp.json())["url"])
    except (aiohttp.ClientResponseError, ValueError, KeyError):
        pass
    print(NO_STAND_IN, file=sys.stderr)
    return None
