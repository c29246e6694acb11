"""`bot simulate dingtalk`: a signed robot message whose sessionWebhook is a local listener."""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from typing import Any

from bot.cli.simulate.common import configured, http_session, post_webhook
from bot.domain import DEFAULT_APP
from bot.settings import DingTalkSettings, Settings


async def dingtalk(
    base: str,
    settings: Settings,
    text: str,
    group: bool,
    user: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
) -> int:
    """POST a signed robot message whose sessionWebhook is a local listener; print the reply.

    The listener runs on 127.0.0.1, so the reply arrives when the worker runs on this host.
    """
    from aiohttp import web as aioweb

    from adapters.dingtalk import simulate as dingtalk_simulate

    app_settings = configured(
        settings, "dingtalk", app_name, DingTalkSettings, "DINGTALK_APP_KEY, DINGTALK_APP_SECRET"
    )
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def session(request: aioweb.Request) -> aioweb.Response:
        received.put_nowait(await request.json())
        return aioweb.json_response({"errcode": 0, "errmsg": "ok"})

    listener = aioweb.Application()
    listener.router.add_post("/session", session)
    runner = aioweb.AppRunner(listener, access_log=None)
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        now_ms = int(time.time() * 1000)
        headers, body = dingtalk_simulate.build_robot_message(
            text,
            app_secret=app_settings.app_secret.get_secret_value(),
            msg_id="msg" + secrets.token_urlsafe(16),
            staff_id=user,
            conversation_id="cidSimulatedGroup" if group else f"cidSimulated-{user}",
            session_webhook=f"http://{host}:{port}/session",
            timestamp_ms=now_ms,
            group=group,
            robot_code=app_settings.robot_code or app_settings.app_key,
        )
        async with http_session(wait_s) as http:
            status, _ = await post_webhook(http, base, "dingtalk", app_name, body, headers=headers)
        if status != 200:
            return 1
        try:
            replies = [await asyncio.wait_for(received.get(), wait_s)]
        except TimeoutError:
            print(f"no reply on the sessionWebhook within {wait_s:.0f}s", file=sys.stderr)
            return 1
        await asyncio.sleep(0.5)  # let the remaining parts of a long reply arrive
        while not received.empty():
            replies.append(received.get_nowait())
    finally:
        await runner.cleanup()
    for message in replies:
        print(f"sessionWebhook: {message.get('markdown', {}).get('text', message)}")
    return 0
