"""`bot simulate web`: the web chat API as a browser calls it."""

from __future__ import annotations

import sys

from bot.cli.simulate.common import http_session, plain_reply
from bot.settings import Settings


async def web(
    base: str, user: str, text: str, wait_s: float, *, settings: Settings | None = None
) -> int:
    """POST to /api/chat as `user` (signed with the server's key from `settings`), print the reply.

    Without settings the server issues a new web user (bot/web/identity.py).
    """
    from bot.web import identity as web_identity

    who = {}
    # Signed as `user` when the server's key is at hand (its settings, or its Redis through
    # `bot up`); else the server issues a new user, as to a browser.
    if settings and (web_identity.configured_key(settings) or settings.core.redis_url):
        who = {"user": user, "sig": await web_identity.sign_for(settings, user)}
    async with (
        http_session(wait_s) as http,
        http.post(f"{base}/api/chat", json={**who, "text": text}) as resp,
    ):
        data = await resp.json()
        if resp.status != 200:
            print(f"POST /api/chat -> {resp.status} {data}", file=sys.stderr)
            return 1
    print(plain_reply(data))
    return 0
