"""Trial mode: a stand-in for the Feishu API (messages and CardKit streaming cards), served
by our own web process, so `bot simulate feishu --stream` can show a card typing itself on a
laptop. A Feishu app whose FEISHU_API_BASE is ``http://127.0.0.1:PORT/sandbox/feishu`` (any
app id and secret) talks to it; never enabled unless BOT_SANDBOX is set.

Everything it is asked to do is appended to one list in Redis (bot/keys.py
SANDBOX_FEISHU_SENT, journal.py: the last 1,000 kept, positions valid as it is trimmed), read
back through ``GET /sandbox/feishu/sent?since=N``: messages
(``kind: message``: reply_to, msg_type, text or card_id) and card operations (``kind: card``:
op create / update / close, card_id, sequence, text), each with the time it arrived. It
keeps Feishu's rules the adapter relies on: a sequence must grow (300317), a card out of
streaming mode takes no more text (300309), a bad token is refused (99991663). Pictures and
files `bot simulate feishu --image/--voice` uploads (im/v1/images, im/v1/files) are served
back through the message resources endpoint, as the worker fetches a user's.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys
from bot.web.sandbox import journal

BASE = "/sandbox/feishu"
API = f"{BASE}/open-apis"
KEEP = 1000  # the list keeps this many entries
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # Feishu's limit for a message picture


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def _ok(data: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"code": 0, "msg": "success", "data": data or {}})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message_text(msg_type: str, content: str) -> str:
    """What a sent message says, as plain text (text, or a post's text elements)."""
    try:
        parsed = json.loads(content)
    except (TypeError, ValueError):
        return ""
    if not isinstance(parsed, dict):
        return ""
    if msg_type == "text":
        return str(parsed.get("text") or "")
    body = next((v for v in parsed.values() if isinstance(v, dict)), parsed)
    lines = []
    for paragraph in body.get("content") or []:
        if isinstance(paragraph, list):
            lines.append(
                "".join(str(e.get("text") or "") for e in paragraph if isinstance(e, dict))
            )
    return "\n".join(lines)


def add_routes(app: web.Application, redis_key: web.AppKey[aioredis.Redis]) -> None:
    async def record(request: web.Request, entry: dict[str, Any]) -> None:
        await journal.append(request.app[redis_key], keys.SANDBOX_FEISHU_SENT, entry, KEEP)

    async def authorised(request: web.Request) -> bool:
        current = await request.app[redis_key].get(keys.SANDBOX_FEISHU_TOKEN)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return current is not None and current == given.encode()

    async def token(request: web.Request) -> web.Response:
        issued = "t-" + secrets.token_urlsafe(24)
        await request.app[redis_key].set(
            keys.SANDBOX_FEISHU_TOKEN, issued, ex=keys.SANDBOX_WECOM_TOKEN_TTL_S
        )
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": issued, "expire": 7200}
        )

    async def bot_info(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        bot = {"open_id": "ou_sandbox_bot", "app_name": "sandbox"}
        return web.json_response({"code": 0, "msg": "ok", "bot": bot})

    async def send(request: web.Request, reply_to: str) -> web.Response:
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        body = await _body(request)
        msg_type, content = str(body.get("msg_type") or ""), str(body.get("content") or "")
        message_id = "om_sandbox_" + secrets.token_hex(8)
        entry: dict[str, Any] = {
            "kind": "message",
            "message_id": message_id,
            "reply_to": reply_to,
            "msg_type": msg_type,
        }
        if msg_type == "interactive":
            try:
                shown = json.loads(content)
                entry["card_id"] = str(shown["data"]["card_id"])
            except (TypeError, ValueError, KeyError):
                return _error(230099, "Failed to create card content")
        else:
            entry["text"] = _message_text(msg_type, content)
        await record(request, entry)
        return _ok({"message_id": message_id})

    async def reply(request: web.Request) -> web.Response:
        return await send(request, request.match_info["message_id"])

    async def create(request: web.Request) -> web.Response:
        return await send(request, "")

    async def card_create(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        body = await _body(request)
        try:
            card = json.loads(str(body.get("data") or ""))
            elements = card["body"]["elements"]
            text = next(str(e.get("content") or "") for e in elements if e.get("tag") == "markdown")
            streaming = bool(card.get("config", {}).get("streaming_mode"))
        except (TypeError, ValueError, KeyError, StopIteration, AttributeError):
            return _error(200220, "Failed to generate card content")
        card_id = "7" + str(secrets.randbelow(10**18)).zfill(18)
        await request.app[redis_key].hset(
            keys.sandbox_feishu_card(card_id),
            mapping={"seq": 0, "streaming": int(streaming), "text": text},
        )
        await request.app[redis_key].expire(
            keys.sandbox_feishu_card(card_id), keys.SANDBOX_WECOM_TOKEN_TTL_S
        )
        await record(request, {"kind": "card", "op": "create", "card_id": card_id, "text": text})
        return _ok({"card_id": card_id})

    async def sequenced(
        request: web.Request, body: dict[str, Any]
    ) -> tuple[dict[Any, Any], web.Response | None]:
        card_id = request.match_info["card_id"]
        found = await request.app[redis_key].hgetall(keys.sandbox_feishu_card(card_id))
        if not found:
            return {}, _error(200740, "The card entity does not exist")
        seq = body.get("sequence")
        if not isinstance(seq, int) or seq <= int(found[b"seq"]):
            return {}, _error(300317, "The sequence number did not increment")
        return found, None

    async def card_content(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        body = await _body(request)
        found, problem = await sequenced(request, body)
        if problem is not None:
            return problem
        if found[b"streaming"] != b"1":
            return _error(300309, "streaming mode is closed")
        card_id, text = request.match_info["card_id"], str(body.get("content") or "")
        await request.app[redis_key].hset(
            keys.sandbox_feishu_card(card_id), mapping={"seq": body["sequence"], "text": text}
        )
        entry = {"op": "update", "card_id": card_id, "sequence": body["sequence"], "text": text}
        await record(request, {"kind": "card", **entry})
        return _ok()

    async def card_settings(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        body = await _body(request)
        found, problem = await sequenced(request, body)
        if problem is not None:
            return problem
        try:
            config = json.loads(str(body.get("settings") or ""))["config"]
        except (TypeError, ValueError, KeyError):
            return _error(10002, "invalid request parameter: settings")
        card_id = request.match_info["card_id"]
        streaming = int(bool(config.get("streaming_mode", found[b"streaming"] == b"1")))
        await request.app[redis_key].hset(
            keys.sandbox_feishu_card(card_id),
            mapping={"seq": body["sequence"], "streaming": streaming},
        )
        if not streaming:
            entry = {"op": "close", "card_id": card_id, "sequence": body["sequence"]}
            await record(request, {"kind": "card", **entry})
        return _ok()

    async def sent(request: web.Request) -> web.Response:
        try:
            start = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "since: a number"}, status=400)
        redis = request.app[redis_key]
        events, following = await journal.since(redis, keys.SANDBOX_FEISHU_SENT, start)
        return web.json_response({"events": events, "next": following})

    async def upload(request: web.Request) -> web.Response:
        # 上传图片 (field "image") / 上传文件 (field "file"): multipart, kept for three days.
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        is_image = request.path.endswith("/images")
        field = "image" if is_image else "file"
        try:
            form = await request.post()
        except ValueError:
            return _error(234001, "Invalid request param.")
        part = form.get(field)
        if not isinstance(part, web.FileField):
            return _error(234001, f"{field} is required.")
        data = part.file.read()
        if not data or len(data) > MAX_UPLOAD_BYTES:
            return _error(234006, "The file size exceeds the limit.")
        key = ("img_v3_sandbox_" if is_image else "file_v3_sandbox_") + secrets.token_hex(8)
        redis = request.app[redis_key]
        stored = keys.sandbox_feishu_resource(key)
        await redis.hset(stored, mapping={"data": data, "content_type": part.content_type})
        await redis.expire(stored, keys.SANDBOX_MEDIA_TTL_S)
        return _ok({"image_key": key} if is_image else {"file_key": key})

    async def resource(request: web.Request) -> web.Response:
        # 获取消息中的资源文件: the file (any message id here), or a JSON error.
        if not await authorised(request):
            return _error(99991663, "Invalid access token for authorization.")
        found = await request.app[redis_key].hgetall(
            keys.sandbox_feishu_resource(request.match_info["file_key"])
        )
        if not found:
            return _error(234003, "File not in msg.")
        kind = found[b"content_type"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        return web.Response(body=found[b"data"], content_type=kind or "application/octet-stream")

    app.router.add_post(f"{API}/im/v1/images", upload)
    app.router.add_post(f"{API}/im/v1/files", upload)
    app.router.add_get(f"{API}/im/v1/messages/{{message_id}}/resources/{{file_key}}", resource)
    app.router.add_post(f"{API}/auth/v3/tenant_access_token/internal", token)
    app.router.add_get(f"{API}/bot/v3/info", bot_info)
    app.router.add_post(f"{API}/im/v1/messages/{{message_id}}/reply", reply)
    app.router.add_post(f"{API}/im/v1/messages", create)
    app.router.add_post(f"{API}/cardkit/v1/cards", card_create)
    app.router.add_put(
        f"{API}/cardkit/v1/cards/{{card_id}}/elements/{{element_id}}/content", card_content
    )
    app.router.add_patch(f"{API}/cardkit/v1/cards/{{card_id}}/settings", card_settings)
    app.router.add_get(f"{BASE}/sent", sent)
