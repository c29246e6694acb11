"""Trial mode: where `bot simulate wecom_aibot --image` puts a picture, served back as WeCom
serves an AI bot's media: encrypted with the bot's EncodingAESKey (the CLI encrypts it), at a
URL valid for a few minutes. Never enabled unless BOT_SANDBOX is set; in that mode the AI bot
may fetch from this server's own address (bot/wiring.py), not otherwise.
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys

BASE = "/sandbox/wecom_aibot"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024 + 32  # the bot's default cap, plus the padding


def add_routes(app: web.Application, redis_key: web.AppKey[aioredis.Redis]) -> None:
    async def upload(request: web.Request) -> web.Response:
        data = await request.read()
        if not data or len(data) > MAX_UPLOAD_BYTES:
            return web.json_response({"error": "empty or too large"}, status=400)
        name = secrets.token_urlsafe(16)
        await request.app[redis_key].set(
            keys.sandbox_aibot_media(name), data, ex=keys.SANDBOX_AIBOT_MEDIA_TTL_S
        )
        return web.json_response({"url": f"{request.scheme}://{request.host}{BASE}/media/{name}"})

    async def serve(request: web.Request) -> web.Response:
        found = await request.app[redis_key].get(
            keys.sandbox_aibot_media(request.match_info["name"])
        )
        if found is None:
            return web.Response(status=404, text="expired")
        return web.Response(body=found, content_type="application/octet-stream")

    app.router.add_post(f"{BASE}/media", upload)
    app.router.add_get(f"{BASE}/media/{{name}}", serve)
