"""`bot simulate wechat_mp`: a message as WeChat posts it (text, a picture or a voice
message), and the passive reply."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import aiohttp

from adapters.wechat_mp.client import WeChatMPClient
from bot.cli.simulate.common import (
    XML,
    configured,
    fresh_stamp,
    http_session,
    post_webhook,
    upload_file,
)
from bot.domain import DEFAULT_APP
from bot.settings import Settings, WeChatMPSettings

# The Content-Type a recording is uploaded with, by the format read from its bytes.
_AUDIO_TYPES = {"amr": "audio/amr", "mp3": "audio/mpeg"}


async def wechat_mp(
    base: str,
    settings: Settings,
    user: str,
    text: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST a message as WeChat would: plaintext mode, or safe mode when a key is set.

    With `image` or `voice` the file is first uploaded as temporary media through the
    account's own API (media/upload: WeChat itself, which takes AMR or MP3 voice, or a
    stand-in at WECHAT_API_BASE), and the message names its media_id, so the worker fetches
    it with media/get as it fetches a follower's.
    """
    from adapters.wechat_mp import simulate as wechat_mp_simulate

    app = configured(
        settings, "wechat_mp", app_name, WeChatMPSettings, "WECHAT_MP_APP_ID, _APP_SECRET, _TOKEN"
    )
    now = int(time.time())
    openid = user if user.startswith("o") else f"o{user}"
    msg_id = str(secrets.randbelow(10**18) + 10**18)
    media = image or voice
    if media is None:
        xml = wechat_mp_simulate.text_xml(
            text, from_user=openid, to_user="gh_simulated", msg_id=msg_id, create_time=now
        )
    else:
        kind = "image" if image else "voice"
        async with http_session(wait_s) as http:
            media_id = await _upload(http, app, media, kind)
        if not media_id:
            return 1
        fields = (
            {"PicUrl": "", "MediaId": media_id}
            if image
            else {"MediaId": media_id, "Format": "amr", "Recognition": ""}
        )
        xml = wechat_mp_simulate.message_xml(
            kind, from_user=openid, to_user="gh_simulated", create_time=now, MsgId=msg_id, **fields
        )
    token = app.token.get_secret_value()
    aes_key = app.aes_key.get_secret_value()
    stamp = fresh_stamp(now)
    if aes_key:
        query, body = wechat_mp_simulate.safe_post(
            xml,
            token=token,
            aes_key=aes_key,
            app_id=app.app_id,
            openid=openid,
            to_user="gh_simulated",
            **stamp,
        )
    else:
        query, body = wechat_mp_simulate.plain_post(
            xml, token=token, timestamp=stamp["timestamp"], nonce=stamp["nonce"], openid=openid
        )
    mode = "safe" if aes_key else "plaintext"
    async with http_session(wait_s) as http:
        status, answer = await post_webhook(
            http,
            base,
            "wechat_mp",
            app_name,
            body,
            params=query,
            headers=XML,
            note=f" ({mode} mode)",
        )
    if status != 200:
        return 1
    if answer.startswith("<xml>"):
        content = wechat_mp_simulate.passive_content(answer, aes_key=aes_key, app_id=app.app_id)
        print(f"passive reply: {content!r}")
        return 0
    print(f"accepted; the reply goes to {openid} through message/custom/send")
    return 0


async def _upload(http: aiohttp.ClientSession, app: WeChatMPSettings, path: Path, kind: str) -> str:
    """The media_id of the file at `path` uploaded as `kind` (image, voice); "" (said why)
    when it failed."""
    client = WeChatMPClient(
        DEFAULT_APP,
        app.api_base,
        None,
        10.0,
        client_id=app.app_id,
        client_secret=app.app_secret.get_secret_value(),
    )
    return await upload_file(http, client, path, kind, _AUDIO_TYPES)
