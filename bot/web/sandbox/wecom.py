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
from aiohttp import BodyPartReader, web

from bot import keys

# A picture uploaded for `bot simulate wecom --image`: WeCom's own limit for images.
MAX_MEDIA_BYTES = 10 * 1024 * 1024


def add_routes(app: web.Application, redis_key: web.AppKey[aioredis.Redis]) -> None:
    async def authorised(request: web.Request) -> bool:
        current = await request.app[redis_key].get(keys.SANDBOX_WECOM_TOKEN)
        return current is not None and current == request.query.get("access_token", "").encode()

    async def gettoken(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        token = secrets.token_urlsafe(24)
        await redis.set(keys.SANDBOX_WECOM_TOKEN, token, ex=keys.SANDBOX_WECOM_TOKEN_TTL_S)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    async def send(request: web.Request) -> web.Response:
        redis = request.app[redis_key]
        if not await authorised(request):
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

    async def upload(request: web.Request) -> web.Response:
        # 上传临时素材 (multipart, field "media"): read as a stream, past the app's body limit.
        if not await authorised(request):
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        chunks: list[bytes] = []
        size, content_type = 0, ""
        try:
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.name == "media":
                    given = part.headers.get("Content-Type", "")
                    content_type = given.split(";")[0].strip() or "application/octet-stream"
                    while chunk := await part.read_chunk():
                        size += len(chunk)
                        if size > MAX_MEDIA_BYTES:
                            return web.json_response(
                                {"errcode": 40009, "errmsg": "invalid image size"}
                            )
                        chunks.append(chunk)
                    break
        except (ValueError, AssertionError):
            return web.json_response({"errcode": 40058, "errmsg": "invalid multipart body"})
        data = b"".join(chunks)
        if not data:
            return web.json_response({"errcode": 40009, "errmsg": "invalid image size"})
        media_id = secrets.token_urlsafe(24)
        redis = request.app[redis_key]
        stored = keys.sandbox_wecom_media(media_id)
        await redis.hset(stored, mapping={"data": data, "content_type": content_type})
        await redis.expire(stored, keys.SANDBOX_MEDIA_TTL_S)
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "type": request.query.get("type", "image"),
                "media_id": media_id,
            }
        )

    async def media_get(request: web.Request) -> web.Response:
        # 获取临时素材: the file, or an errcode as JSON (text/plain, as WeCom answers it).
        if not await authorised(request):
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        media_id = request.query.get("media_id", "")
        found = await request.app[redis_key].hgetall(keys.sandbox_wecom_media(media_id))
        if not found:
            return web.Response(
                text=json.dumps({"errcode": 40007, "errmsg": "invalid media_id"}),
                content_type="text/plain",
            )
        kind = found[b"content_type"]
        return web.Response(
            body=found[b"data"], content_type=kind.decode() if isinstance(kind, bytes) else kind
        )

    app.router.add_post("/sandbox/wecom/cgi-bin/media/upload", upload)
    app.router.add_get("/sandbox/wecom/cgi-bin/media/get", media_get)
    app.router.add_get("/sandbox/wecom/cgi-bin/gettoken", gettoken)
    app.router.add_post("/sandbox/wecom/cgi-bin/message/send", send)
    app.router.add_get("/sandbox/wecom/sent", sent)
