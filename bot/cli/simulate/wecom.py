"""`bot simulate wecom` and `bot simulate wecom_kf`: signed, encrypted WeCom callbacks; in
trial mode (`bot up` without WeCom credentials) the reply the sandbox stand-in received."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from adapters.wecom import simulate as wecom_simulate
from adapters.wecom.client import WeComClient
from adapters.wecom_kf import simulate as wecom_kf_simulate
from bot.cli.embedded import load_sandbox_env
from bot.cli.simulate.common import (
    XML,
    app_section,
    configured,
    fresh_stamp,
    http_session,
    post_webhook,
    sandbox_cursor,
    sandbox_sent,
    upload_file,
)
from bot.domain import DEFAULT_APP
from bot.errors import ConfigError
from bot.settings import Settings, WeComKfSettings, WeComSettings


def _wecom_settings(settings: Settings, app: str = DEFAULT_APP) -> tuple[WeComSettings, bool]:
    """The configured WeCom app, or the sandbox app `bot up` made; (settings, is_sandbox)."""
    named = app_section(settings, "wecom", app, WeComSettings)
    if named is not None:
        return named, False
    if settings.wecom.enabled:
        return settings.wecom, settings.core.sandbox
    values = load_sandbox_env(settings.core.data_dir)
    if not values:
        raise ConfigError(
            "WeCom is not configured (WECOM_*) and no sandbox app exists: run `bot up` first"
        )
    wecom = WeComSettings(
        _env_file=None,  # type: ignore[call-arg]
        corp_id=values["WECOM_CORP_ID"],
        agent_id=values["WECOM_AGENT_ID"],
        secret=SecretStr(values["WECOM_SECRET"]),
        token=SecretStr(values["WECOM_TOKEN"]),
        aes_key=SecretStr(values["WECOM_AES_KEY"]),
        api_base=values["WECOM_API_BASE"],
    )
    return wecom, True


async def wecom(
    base: str,
    settings: Settings,
    user: str,
    text: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST a signed, encrypted text callback (a picture's with `image`, a voice message's
    with `voice`); in sandbox mode also print the bot's reply.

    A picture or a recording is first uploaded through the app's own API (media/upload: the
    sandbox stand-in, or WeCom itself with real credentials, which takes AMR voice only), so
    the worker can fetch it with media/get as it fetches a member's.
    """
    app, sandbox = _wecom_settings(settings, app_name)
    now = int(time.time())
    msg_id = str(secrets.randbelow(10**18) + 10**18)
    sealing: dict[str, Any] = {
        "corp_id": app.corp_id,
        "agent_id": app.agent_id,
        "token": app.token.get_secret_value(),
        "aes_key": app.aes_key.get_secret_value(),
        **fresh_stamp(now),
    }
    sent_url = f"{base}/sandbox/wecom/sent"
    async with http_session(wait_s) as http:
        media = image or voice
        if media is None:
            query, body = wecom_simulate.build_callback(
                text, from_user=user, msg_id=msg_id, create_time=now, **sealing
            )
        else:
            media_id = await _upload(http, app, media, "image" if image else "voice")
            if not media_id:
                return 1
            make = wecom_simulate.image_fields if image else wecom_simulate.voice_fields
            fields = make(
                media_id,
                corp_id=app.corp_id,
                agent_id=app.agent_id,
                from_user=user,
                msg_id=msg_id,
                create_time=now,
            )
            query, body = wecom_simulate.build_post(fields, **sealing)
        since = await sandbox_cursor(http, sent_url) if sandbox else 0
        status, _ = await post_webhook(
            http, base, "wecom", app_name, body, params=query, headers=XML
        )
        if status != 200:
            return 1
        if not sandbox:
            print("accepted; the reply goes out through WeCom's message/send API")
            return 0
        replies = await sandbox_sent(http, sent_url, user, since, wait_s, settle_s=0.5)
    return _print_sent("message/send", replies, lambda sent: sent["text"]["content"], wait_s)


async def _upload(
    http: aiohttp.ClientSession,
    app: WeComSettings | WeComKfSettings,
    path: Path,
    kind: str = "image",
) -> str:
    """The media_id of the file at `path` uploaded through the app's API as `kind` (image,
    voice); "" (said why) when it failed."""
    client = WeComClient(
        DEFAULT_APP,
        app.api_base,
        None,
        10.0,
        client_id=app.corp_id,
        client_secret=app.secret.get_secret_value(),
    )
    return await upload_file(http, client, path, kind)


SIM_OPEN_KFID = "wkSimulatedKfAccount"


async def wecom_kf(
    base: str,
    settings: Settings,
    user: str,
    text: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST a signed, encrypted ``kf_msg_or_event`` callback as WeCom does for 微信客服.

    The callback only says "pull now" (docs/protocols/wecom-kf.md). In trial mode (BOT_SANDBOX with
    the sandbox WECOM_API_BASE) the text is first put in the server's 微信客服 stand-in, so the
    worker's kf/sync_msg returns it, and the kf/send_msg answer is printed; `image` or `voice`
    is uploaded through the stand-in's media/upload and put there as an image or voice message.
    Against WeCom itself only the callback path can be exercised: the real sync_msg knows no
    simulated message.
    """

    kf = configured(
        settings,
        "wecom_kf",
        app_name,
        WeComKfSettings,
        "WECOM_CORP_ID, WECOM_KF_SECRET, WECOM_KF_TOKEN, WECOM_KF_AES_KEY",
    )
    sandbox = settings.core.sandbox and "/sandbox/wecom" in kf.api_base
    media = image or voice
    if media is not None and not sandbox:
        print(
            "--image/--voice with wecom_kf need trial mode (`bot up`): WeCom's own kf/sync_msg "
            "holds no simulated message",
            file=sys.stderr,
        )
        return 2
    user = user if user.startswith("wm") else f"wm{user}"
    now = int(time.time())
    query, body = wecom_kf_simulate.build_callback(
        corp_id=kf.corp_id,
        token=kf.token.get_secret_value(),
        aes_key=kf.aes_key.get_secret_value(),
        sync_token=f"SIM{secrets.token_hex(12)}",
        open_kfid=SIM_OPEN_KFID,
        create_time=now,
        **fresh_stamp(now),
    )
    sent_url = f"{base}/sandbox/wecom/kf/sent"
    async with http_session(wait_s) as http:
        since = 0
        if sandbox:
            since = await sandbox_cursor(http, sent_url)
            message: dict[str, str] = {"open_kfid": SIM_OPEN_KFID, "external_userid": user}
            if media is None:
                message["text"] = text
            else:
                kind = "image" if image else "voice"
                media_id = await _upload(http, kf, media, kind)
                if not media_id:
                    return 1
                message.update(msgtype=kind, media_id=media_id)
            async with http.post(f"{base}/sandbox/wecom/kf/inject", json=message) as resp:
                if (await resp.json()).get("errcode") != 0:
                    print("the sandbox refused the message", file=sys.stderr)
                    return 1
        status, _ = await post_webhook(
            http, base, "wecom_kf", app_name, body, params=query, headers=XML
        )
        if status != 200:
            return 1
        if not sandbox:
            print(
                "callback accepted; the worker now pulls kf/sync_msg from WeCom, which does not "
                "hold this simulated text (use `bot up` trial mode for a full round trip)"
            )
            return 0
        replies = await sandbox_sent(http, sent_url, user, since, wait_s)
    return _print_sent("kf/send_msg", replies, lambda sent: sent["content"], wait_s)


def _print_sent(
    api: str, replies: list[dict[str, Any]], text_of: Callable[[dict[str, Any]], str], wait_s: float
) -> int:
    """Print each reply the stand-in's `api` sent; exit status 1 when none came in time."""
    if not replies:
        print(f"no reply within {wait_s:.0f}s", file=sys.stderr)
        return 1
    for sent in replies:
        print(f"{api} to {sent['touser']}: {text_of(sent)}")
    return 0
