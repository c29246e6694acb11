"""Does the app hold the scopes the bot needs? Asked with calls no user sees.

Feishu checks the token's scopes before it looks at a request's content, and a missing one
answers 99991672 naming the scopes of which one is needed. So:

- send (`im:message`, or `im:message:send_as_bot`): a text message to a chat id of Feishu's
  shape that no chat has. Granted, Feishu goes on to look at the chat and answers 230001
  "invalid receive_id"; nothing is sent.
- streaming cards (`cardkit:card:write`, with FEISHU_STREAMING_CARDS): one card entity is
  created and never sent; no one sees it, and Feishu drops unsent entities by itself.

DingTalk has no such call: its robot send and card APIs deliver what they are given, and a
read-only API the same permission covers is not documented, so its permissions show only
when a reply is refused (the worker's log line and `bot_platform_errors_total`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any

import aiohttp

from adapters.feishu.client import FeishuClient
from bot.doctor.platforms import app_name
from bot.doctor.result import Result, fail, ok, skip
from bot.errors import BotError, PlatformRejectedError
from bot.settings import Settings
from bot.settings.platforms import FeishuSettings
from bot.wiring import adapter_for

SCOPE_TIMEOUT_S = 8.0
MISSING_SCOPE = 99991672
# A chat id of Feishu's shape (oc_ + 32 hex digits) that no chat has.
NO_CHAT = "oc_" + "0" * 32
_CARD = {
    "schema": "2.0",
    "config": {"streaming_mode": False},
    "body": {"elements": [{"tag": "markdown", "element_id": "doctor", "content": "bot doctor"}]},
}


async def check_feishu(settings: Settings, app: str, section: FeishuSettings) -> list[Result]:
    """The send scope, and the CardKit scope when streaming cards are on."""
    client = adapter_for(section, app=app, settings=settings, tokens=None, redis=None)
    if not isinstance(client, FeishuClient):
        return []
    label = app_name("feishu", app)
    send = f"{label} scope im:message"
    cards = f"{label} scope cardkit:card:write"
    names = [send, cards] if section.streaming_cards else [send]
    try:
        # One deadline for the token and the calls, so the doctor's run stays short.
        async with asyncio.timeout(SCOPE_TIMEOUT_S), aiohttp.ClientSession() as http:
            try:
                await client.access_token(http)
            except BotError:
                return [
                    skip(name, "no tenant access token (see the token check)") for name in names
                ]
            asked = [_send_scope(client, http, send)]
            if section.streaming_cards:
                asked.append(_card_scope(client, http, cards))
            return list(await asyncio.gather(*asked))
    except TimeoutError:
        why = f"the API did not answer within {SCOPE_TIMEOUT_S:g} s"
        return [skip(name, why) for name in names]


async def _send_scope(client: FeishuClient, http: aiohttp.ClientSession, name: str) -> Result:
    body = {"receive_id": NO_CHAT, "msg_type": "text", "content": '{"text":"bot doctor"}'}
    params = {"receive_id_type": "chat_id"}
    path = "/open-apis/im/v1/messages"
    code = await _code(client.post(http, path, body, params))
    if code == MISSING_SCOPE:
        return fail(
            name,
            f"errcode {MISSING_SCOPE}: the app may not send messages",
            "在开发者后台「权限管理」开通 im:message（或 im:message:send_as_bot），"
            "再创建版本并发布；没有它机器人收得到消息却回复不了",
            "enable im:message (or im:message:send_as_bot) under 权限管理 in the developer "
            "console, then create and publish a version: without it the bot receives messages "
            "but cannot answer",
        )
    if isinstance(code, str):
        return skip(name, code)
    return ok(name, f"granted (asked with a chat that does not exist: code {code})")


async def _card_scope(client: FeishuClient, http: aiohttp.ClientSession, name: str) -> Result:
    body = {"type": "card_json", "data": json.dumps(_CARD)}
    code = await _code(client.post(http, "/open-apis/cardkit/v1/cards", body))
    if code == MISSING_SCOPE:
        return fail(
            name,
            f"errcode {MISSING_SCOPE}: FEISHU_STREAMING_CARDS=true, but the app may not "
            "create cards (answers go out as plain replies)",
            "在开发者后台「权限管理」开通 cardkit:card:write 并发布新版本；或关闭 "
            "FEISHU_STREAMING_CARDS",
            "enable cardkit:card:write under 权限管理 and publish a version, or unset "
            "FEISHU_STREAMING_CARDS",
        )
    if isinstance(code, str):
        return skip(name, code)
    if code == 0:
        return ok(name, "granted (created a card entity, never sent)")
    return ok(name, f"granted (the card was refused for another reason: code {code})")


async def _code(call: Awaitable[dict[str, Any]]) -> int | str:
    """The Feishu code a call answers (0: done), or why there is none."""
    try:
        await call
    except PlatformRejectedError as exc:
        code = getattr(exc, "errcode", None)
        return code if isinstance(code, int) else f"refused without a code ({exc})"
    except BotError as exc:
        return f"the API did not answer ({type(exc).__name__})"
    return 0
