"""`bot simulate wechat_mp`: a text message as WeChat posts it, and the passive reply."""

from __future__ import annotations

import secrets
import time

from bot.cli.simulate.common import XML, configured, fresh_stamp, http_session, post_webhook
from bot.domain import DEFAULT_APP
from bot.settings import Settings, WeChatMPSettings


async def wechat_mp(
    base: str, settings: Settings, user: str, text: str, wait_s: float, app_name: str = DEFAULT_APP
) -> int:
    """POST a text message as WeChat would: plaintext mode, or safe mode when a key is set."""
    from adapters.wechat_mp import simulate as wechat_mp_simulate

    app = configured(
        settings, "wechat_mp", app_name, WeChatMPSettings, "WECHAT_MP_APP_ID, _APP_SECRET, _TOKEN"
    )
    now = int(time.time())
    openid = user if user.startswith("o") else f"o{user}"
    xml = wechat_mp_simulate.text_xml(
        text,
        from_user=openid,
        to_user="gh_simulated",
        msg_id=str(secrets.randbelow(10**18) + 10**18),
        create_time=now,
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
