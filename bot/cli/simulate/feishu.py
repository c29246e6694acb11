"""`bot simulate feishu`: an encrypted, signed message event as Feishu sends it."""

from __future__ import annotations

import os
import secrets
import time

from bot.cli.simulate.common import configured, http_session, post_webhook
from bot.domain import DEFAULT_APP
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
) -> int:
    """POST an encrypted, signed ``im.message.receive_v1`` event as Feishu would."""
    from adapters.feishu import simulate as feishu_simulate

    app = configured(
        settings, "feishu", app_name, FeishuSettings, "FEISHU_APP_ID, FEISHU_APP_SECRET, ..."
    )
    now = int(time.time())
    open_id = user if user.startswith("ou_") else f"ou_{user}"
    headers, body = feishu_simulate.build_message(
        text,
        app_id=app.app_id,
        verification_token=app.verification_token.get_secret_value(),
        encrypt_key=app.encrypt_key.get_secret_value(),
        user_open_id=open_id,
        message_id=f"om_sim_{secrets.token_hex(12)}",
        chat_id="oc_sim_group" if group else f"oc_sim_{user}",
        event_id=secrets.token_hex(16),
        now=now,
        nonce=secrets.token_hex(8),
        iv=os.urandom(16),
        group=group,
        mention_bot=mention,
        bot_open_id=app.bot_open_id or "ou_bot",
    )
    async with http_session(wait_s) as http:
        status, _ = await post_webhook(http, base, "feishu", app_name, body, headers=headers)
    if status != 200:
        return 1
    print("accepted; the reply goes out through Feishu's im/v1/messages/{message_id}/reply API")
    return 0
