"""Trial mode: a stand-in for the WeCom API, served by our own web process.

`bot up` without WeCom credentials configures a sandbox WeCom app whose API base points
here, so `bot simulate wecom` shows a full round trip (signed, encrypted callback in,
`message/send` out) on a laptop. Never enabled unless BOT_SANDBOX is set.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys


def add_routes(app: web.Application, redis_key: web.AppKey[aioredis.Redis]) -> None:
    async def gettoken(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        token = secrets.token_urlsafe(24)
        await redis.set(keys.SANDBOX_WECOM_TOKEN, token, ex=keys.SANDBOX_WECOM_TOKEN_TTL_S)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    async def send(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        current = await redis.get(keys.SANDBOX_WECOM_TOKEN)
        if current is None or current != request.query.get("access_token", "").encode():
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        body: Any = await request.json()
        msgid = secrets.token_hex(8)
        await redis.rpush(
            keys.SANDBOX_WECOM_SENT, json.dumps({"msgid": msgid, **body}, ensure_ascii=False)
        )
        await redis.ltrim(keys.SANDBOX_WECOM_SENT, -1000, -1)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def sent(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        start = int(request.query.get("since", "0"))
        rows = await redis.lrange(keys.SANDBOX_WECOM_SENT, start, -1)
        return web.json_response(
            {"messages": [json.loads(r) for r in rows], "next": start + len(rows)}
        )

    app.router.add_get("/sandbox/wecom/cgi-bin/gettoken", gettoken)
    app.router.add_post("/sandbox/wecom/cgi-bin/message/send", send)
    app.router.add_get("/sandbox/wecom/sent", sent)
