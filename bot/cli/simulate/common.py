"""What every `bot simulate PLATFORM` shares: the webhook URL, the app's settings, the POST
as the platform makes it, and reading what a sandbox stand-in sent."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiohttp

from adapters.wechat.simulate import Stamp
from bot.domain import DEFAULT_APP, Source, sources_line
from bot.errors import BotError, ConfigError
from bot.llm import audio, images
from bot.settings import Settings
from bot.settings import apps as appconfig

T = TypeVar("T")
XML = {"Content-Type": "text/xml"}
LABELS = {
    "wecom": "WeCom",
    "wecom_kf": "微信客服",
    "wecom_aibot": "WeCom AI bot",
    "dingtalk": "DingTalk",
    "feishu": "Feishu",
    "wechat_mp": "WeChat MP",
}


def hook(base: str, platform: str, app: str) -> str:
    """The webhook URL of `platform`/`app` (the default app has the short one)."""
    return f"{base}/webhooks/{platform}" + ("" if app == DEFAULT_APP else f"/{app}")


def app_section(settings: Settings, platform: str, app: str, model: type[T]) -> T | None:
    """A named app's settings section from bot.toml; None for the default app."""
    if app == DEFAULT_APP:
        return None
    found = appconfig.section(settings, platform, app)
    if not isinstance(found, model):
        raise ConfigError(f"{platform} app {app} is not configured (no [{platform}.{app}] table)")
    return found


def configured(settings: Settings, platform: str, app: str, model: type[T], names: str) -> T:
    """The settings of `platform`/`app`; ConfigError naming the variables when it is off."""
    found = appconfig.section(settings, platform, app)
    if isinstance(found, model):
        return found
    if app != DEFAULT_APP:
        raise ConfigError(f"{platform} app {app} is not configured (no [{platform}.{app}] table)")
    raise ConfigError(f"{LABELS.get(platform, platform)} is not configured ({names})")


def http_session(wait_s: float) -> aiohttp.ClientSession:
    """The HTTP session of one run: it outlasts the wait for the reply a little."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait_s + 10))


def fresh_stamp(now: int) -> Stamp:
    """A timestamp, nonce and random prefix drawn as a WeChat-family sender does, per request."""
    return {
        "timestamp": str(now),
        "nonce": str(secrets.randbelow(10**9)),
        "random_prefix": os.urandom(16),
    }


async def post_webhook(
    http: aiohttp.ClientSession,
    base: str,
    platform: str,
    app: str,
    body: bytes,
    *,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
    note: str = "",
) -> tuple[int, str]:
    """POST one webhook as the platform would; print the line the user sees."""
    async with http.post(
        hook(base, platform, app), params=params, data=body, headers=headers
    ) as resp:
        answer = await resp.text()
    print(f"POST {hook('', platform, app)}{note} -> {resp.status} {answer!r}")
    return resp.status, answer


async def sandbox_sent(
    http: aiohttp.ClientSession,
    url: str,
    user: str,
    since: int,
    wait_s: float,
    *,
    settle_s: float = 0.0,
) -> list[dict[str, Any]]:
    """What the sandbox stand-in at `url` sent to `user` after `since`, waiting up to `wait_s`.

    With `settle_s`, once something arrived wait that long for the rest of a long reply.
    """
    deadline = time.monotonic() + wait_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        async with http.get(url, params={"since": str(since)}) as resp:
            data = await resp.json()
        since = data["next"]
        found.extend(m for m in data["messages"] if m.get("touser") == user)
        if found:
            if settle_s:
                await asyncio.sleep(settle_s)
                async with http.get(url, params={"since": str(since)}) as resp:
                    data = await resp.json()
                found.extend(m for m in data["messages"] if m.get("touser") == user)
            return found
        await asyncio.sleep(0.3)
    return found


async def sandbox_cursor(http: aiohttp.ClientSession, url: str) -> int:
    """Where the stand-in's sent list ends now (only what comes after is this run's)."""
    async with http.get(url, params={"since": "0"}) as resp:
        return int((await resp.json())["next"]) if resp.status == 200 else 0


def plain_reply(data: Mapping[str, Any]) -> str:
    """A `/api/chat` answer as plain text: the reply, then its sources line, as chat
    platforms show it."""
    listed = data.get("sources") or []
    cited = tuple(Source(s["title"], s.get("section", "")) for s in listed if "title" in s)
    return str(data.get("reply", "")) + sources_line(cited)


# The Content-Type a recording is uploaded with, by the format read from its bytes.
AUDIO_TYPES = {"amr": "audio/amr", "ogg": "audio/ogg", "mp3": "audio/mpeg", "wav": "audio/wav"}


class UploadsMedia(Protocol):
    """A platform client that uploads temporary media (the WeCom app, the Official Account)."""

    async def upload_media(
        self,
        http: aiohttp.ClientSession,
        data: bytes,
        *,
        filename: str,
        content_type: str = ...,
        kind: str = ...,
    ) -> str: ...


async def upload_file(
    http: aiohttp.ClientSession,
    client: UploadsMedia,
    path: Path,
    kind: str,
    audio_types: Mapping[str, str] = AUDIO_TYPES,
) -> str:
    """The media_id of the file at `path` uploaded as `kind` (image, voice), its type read
    from its bytes; "" (said why on stderr) when it could not be read or uploaded."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return ""
    sniffed = images.sniff(data) if kind == "image" else audio_types.get(audio.sniff(data[:16]))
    try:
        return await client.upload_media(
            http,
            data,
            filename=path.name,
            content_type=sniffed or "application/octet-stream",
            kind=kind,
        )
    except BotError as exc:
        print(f"uploading {path.name} failed: {exc}", file=sys.stderr)
        return ""
