"""Trial mode: a stand-in for the 微信客服 API, next to the WeCom one of bot/web/sandbox/wecom.py.

The 微信客服 callback carries no message, only "pull now" (docs/protocols/wecom-kf.md), so `bot
simulate wecom_kf` first *injects* the customer's text (or a picture or recording it uploaded
through the WeCom stand-in's media/upload) here, then posts the signed callback; the
worker pulls it through ``kf/sync_msg`` and answers through ``kf/send_msg``, which lands in a list
the simulate command reads back. Served under ``/sandbox/wecom`` (the sandbox WECOM_API_BASE, which
the 微信客服 client shares) and only with BOT_SANDBOX set. Access tokens come from the sandbox
``gettoken``; any non-empty token is accepted here (a trial, not a check of our client).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys

BASE = "/sandbox/wecom"
KEEP = 1000  # messages kept per list
SYNC_LIMIT = 1000


def _error(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


async def _body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def add_routes(app: web.Application, redis_key: web.AppKey[aioredis.Redis]) -> None:
    """Mount the 微信客服 stand-in on `app` (trial mode only)."""

    async def inject(request: web.Request) -> web.Response:
        # Not a WeCom API: what a WeChat user typing to the KF account would cause.
        body = await _body(request)
        if body is None or not all(
            isinstance(body.get(k), str) and body[k] for k in ("open_kfid", "external_userid")
        ):
            return _error(40058, "open_kfid and external_userid required")
        kind = body.get("msgtype", "text")
        if kind in ("image", "voice"):
            # A picture or a recording uploaded first through media/upload (bot/web/sandbox/
            # wecom.py, the same API base), named as kf/sync_msg names a customer's.
            media_id = body.get("media_id")
            if not isinstance(media_id, str) or not media_id:
                return _error(40007, "invalid media_id")
            content: dict[str, Any] = {"media_id": media_id}
        elif kind == "text":
            text = body.get("text")
            if not isinstance(text, str) or not text:
                return _error(44004, "empty content")
            content = {"content": text}
        else:
            return _error(40008, "invalid message type")
        item = {
            "msgid": f"sim{secrets.token_hex(8)}",
            "open_kfid": body["open_kfid"],
            "external_userid": body["external_userid"],
            "send_time": int(time.time()),
            "origin": 3,
            "msgtype": kind,
            kind: content,
        }
        redis = request.app[redis_key]
        key = keys.sandbox_kf_messages(body["open_kfid"])
        await redis.rpush(key, json.dumps(item, ensure_ascii=False))  # type: ignore[misc]
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": item["msgid"]})

    async def sync_msg(request: web.Request) -> web.Response:
        if not request.query.get("access_token"):
            return _error(41001, "access_token missing")
        body = await _body(request)
        if body is None or not isinstance(body.get("open_kfid"), str):
            return _error(95000, "invalid open_kfid")
        cursor = body.get("cursor") or "0"
        if not isinstance(cursor, str) or not cursor.isdigit():
            return _error(95006, "invalid cursor")
        start = int(cursor)
        redis = request.app[redis_key]
        key = keys.sandbox_kf_messages(body["open_kfid"])
        rows = await redis.lrange(key, start, start + SYNC_LIMIT - 1)  # type: ignore[misc]
        total = await redis.llen(key)  # type: ignore[misc]
        end = start + len(rows)
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "next_cursor": str(end),
                "has_more": 1 if end < total else 0,
                "msg_list": [json.loads(r) for r in rows],
            }
        )

    async def send(request: web.Request) -> web.Response:
        if not request.query.get("access_token"):
            return _error(41001, "access_token missing")
        body = await _body(request)
        text = body.get("text") if body is not None else None
        content = text.get("content") if isinstance(text, dict) else None
        if body is None or not isinstance(content, str) or not content:
            return _error(44004, "empty content")
        msgid = secrets.token_hex(8)
        record = {
            "msgid": msgid,
            "touser": body.get("touser", ""),
            "open_kfid": body.get("open_kfid", ""),
            "code": body.get("code", ""),
            "content": content,
        }
        redis = request.app[redis_key]
        await redis.rpush(keys.SANDBOX_KF_SENT, json.dumps(record, ensure_ascii=False))  # type: ignore[misc]
        await redis.ltrim(keys.SANDBOX_KF_SENT, -KEEP, -1)  # type: ignore[misc]
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def sent(request: web.Request) -> web.Response:
        raw = request.query.get("since", "0")
        start = int(raw) if raw.isdigit() else 0
        rows = await request.app[redis_key].lrange(keys.SANDBOX_KF_SENT, start, -1)  # type: ignore[misc]
        return web.json_response(
            {"messages": [json.loads(r) for r in rows], "next": start + len(rows)}
        )

    app.router.add_post(f"{BASE}/kf/inject", inject)
    app.router.add_post(f"{BASE}/cgi-bin/kf/sync_msg", sync_msg)
    app.router.add_post(f"{BASE}/cgi-bin/kf/send_msg", send)
    app.router.add_post(f"{BASE}/cgi-bin/kf/send_msg_on_event", send)
    app.router.add_get(f"{BASE}/kf/sent", sent)
