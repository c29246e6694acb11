"""Trial mode: a stand-in for the DingTalk API (robot replies and AI cards), served by our own
web process, so `bot simulate dingtalk --stream` can show an AI card typing itself on a
laptop. A DingTalk app whose DINGTALK_API_BASE and DINGTALK_OAPI_BASE are
``http://127.0.0.1:PORT/sandbox/dingtalk`` talks to it; never enabled unless BOT_SANDBOX is set.

It answers what the bot asks while answering a message: the access token (for a configured
app key and secret), the markdown reply through a sessionWebhook (``robot/sendBySession``) or
the robot OpenAPI (1:1 ``oToMessages/batchSend``, ``groupMessages/send``), and the AI card
calls (createAndDeliver, ``PUT card/streaming``, ``PUT card/instances``), and the files
`bot simulate dingtalk --image/--voice` sends (``POST /sandbox/dingtalk/media`` gives a
downloadCode, ``robot/messageFiles/download`` a downloadUrl back on this host). Everything it is
asked is appended to one list in Redis (bot/keys.py SANDBOX_DINGTALK_SENT, journal.py), read
back through ``GET /sandbox/dingtalk/sent?since=N``: ``kind: message`` (via session / oto / group,
session, user_ids or conversation, text) and ``kind: card`` (op create / update / status,
out_track_id, text, finalize, flow_status), each with the time it arrived.

It refuses what DingTalk refuses and the bot must cope with: a bad app key or secret, a bad
token (401 InvalidAuthentication), a template no configured app names, a reused outTrackId
or guid, text after isFinalize. State is bounded: the list keeps the last KEEP entries, and
tokens, cards and their guids expire.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from bot import keys
from bot.settings import DingTalkSettings, Settings
from bot.settings import apps as appconfig
from bot.web.sandbox import journal

BASE = "/sandbox/dingtalk"
KEEP = 1000  # the list keeps this many entries
TTL_S = keys.SANDBOX_WECOM_TOKEN_TTL_S  # tokens (DingTalk's expireIn) and cards
MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # DingTalk's limit for a robot message file

# One streaming update, atomically: the card must exist and not be finalized, and the guid
# must be new. KEYS: card hash, its guid set; ARGV: guid, text, finalize ("1"/"0"), ttl.
# Answers "ok", "gone", "final" or "guid".
_STREAM_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HGET', KEYS[1], 'final') == '1' then return 'final' end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 'guid' end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'text', ARGV[2], 'final', ARGV[3])
return 'ok'
"""


def _error(status: int, code: str, message: str) -> web.Response:
    # The new OpenAPI's error shape (docs/protocols/dingtalk.md#robot-openapi-and-access-token).
    body = {"code": code, "message": message, "requestid": "sandbox-" + secrets.token_hex(8)}
    return web.json_response(body, status=status)


def _bad_token() -> web.Response:
    return _error(401, "InvalidAuthentication", "不合法的access_token")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _markdown(body: dict[str, Any]) -> tuple[str, str] | None:
    """(title, text) of an OpenAPI sampleMarkdown message, or None when malformed."""
    if body.get("msgKey") != "sampleMarkdown":
        return None
    try:
        param = json.loads(str(body.get("msgParam") or ""))
    except ValueError:
        return None
    if not isinstance(param, dict) or not param.get("title") or not param.get("text"):
        return None
    return str(param["title"]), str(param["text"])


def _params(body: dict[str, Any]) -> dict[str, str] | None:
    """cardData.cardParamMap, whose values DingTalk takes only as strings; None if not so."""
    data = body.get("cardData")
    params = data.get("cardParamMap") if isinstance(data, dict) else None
    if not isinstance(params, dict) or any(not isinstance(v, str) for v in params.values()):
        return None
    return {str(k): v for k, v in params.items()}


def add_routes(
    app: web.Application, redis_key: web.AppKey[aioredis.Redis], settings: Settings
) -> None:
    # What the configured DingTalk apps may use: their credentials and card templates.
    configured = [
        s for _, _, s in appconfig.configured(settings) if isinstance(s, DingTalkSettings)
    ]
    secrets_by_key = {s.app_key: s.app_secret.get_secret_value() for s in configured}
    templates = {s.card_template_id for s in configured} - {""}

    def redis(request: web.Request) -> aioredis.Redis:
        return request.app[redis_key]

    async def record(request: web.Request, entry: dict[str, Any]) -> None:
        await journal.append(redis(request), keys.SANDBOX_DINGTALK_SENT, entry, KEEP)

    async def authorised(request: web.Request) -> bool:
        given = request.headers.get("x-acs-dingtalk-access-token", "")
        return bool(given) and bool(await redis(request).exists(keys.sandbox_dingtalk_token(given)))

    async def access_token(request: web.Request) -> web.Response:
        body = await _body(request)
        key, secret = str(body.get("appKey") or ""), str(body.get("appSecret") or "")
        want = secrets_by_key.get(key)
        if not key or want is None or not secrets.compare_digest(want, secret):
            return _error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = "sandbox-" + secrets.token_urlsafe(24)
        await redis(request).set(keys.sandbox_dingtalk_token(token), key, ex=TTL_S)
        return web.json_response({"accessToken": token, "expireIn": TTL_S})

    async def session_webhook(request: web.Request) -> web.Response:
        # Answers with an errcode, as the oapi sessionWebhook does; no token.
        body = await _body(request)
        markdown = body.get("markdown")
        if body.get("msgtype") != "markdown" or not isinstance(markdown, dict):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 markdown"})
        if not markdown.get("title") or not markdown.get("text"):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 title/text"})
        entry = {
            "kind": "message",
            "via": "session",
            "session": request.query.get("session", ""),
            "text": str(markdown["text"]),
        }
        await record(request, entry)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def robot_send(request: web.Request, via: str) -> web.Response:
        if not await authorised(request):
            return _bad_token()
        body = await _body(request)
        markdown = _markdown(body)
        if not body.get("robotCode") or markdown is None:
            return _error(400, "invalidParameter", "robotCode/msgKey/msgParam invalid")
        entry: dict[str, Any] = {"kind": "message", "via": via, "text": markdown[1]}
        if via == "oto":
            users = body.get("userIds")
            if not isinstance(users, list) or not users:
                return _error(400, "invalidParameter", "userIds required")
            entry["user_ids"] = [str(u) for u in users]
        else:
            conversation = body.get("openConversationId")
            if not isinstance(conversation, str) or not conversation:
                return _error(400, "invalidParameter", "openConversationId required")
            entry["conversation"] = conversation
        await record(request, entry)
        answer: dict[str, Any] = {"processQueryKey": "sandbox-" + secrets.token_hex(8)}
        if via == "oto":
            answer.update(invalidStaffIdList=[], flowControlledStaffIdList=[])
        return web.json_response(answer)

    async def oto(request: web.Request) -> web.Response:
        return await robot_send(request, "oto")

    async def group(request: web.Request) -> web.Response:
        return await robot_send(request, "group")

    async def create_and_deliver(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _bad_token()
        body = await _body(request)
        track_id, params = body.get("outTrackId"), _params(body)
        if not isinstance(track_id, str) or not track_id or len(track_id) > 64 or params is None:
            return _error(400, "param.outTrackIdEmpty", "outTrackId/cardData 无效")
        if body.get("cardTemplateId") not in templates:
            return _error(400, "invalidParameter.cardTemplate.notFound", "不存在的卡片模板")
        space = str(body.get("openSpaceId") or "")
        if space.startswith("dtv1.card//IM_GROUP."):
            deliver = body.get("imGroupOpenDeliverModel")
            if not isinstance(deliver, dict) or not deliver.get("robotCode"):
                return _error(400, "chatbotNotFound", "不存在的机器人")
            at = deliver.get("atUserIds")
            at_users = sorted(str(u) for u in at) if isinstance(at, dict) else []
        elif space.startswith("dtv1.card//IM_ROBOT."):
            deliver = body.get("imRobotOpenDeliverModel")
            if not isinstance(deliver, dict) or deliver.get("spaceType") != "IM_ROBOT":
                return _error(400, "param.openSpaceModelInvalid", "imRobotOpenDeliverModel 无效")
            at_users = []
        else:
            return _error(400, "param.openSpaceModelInvalid", "openSpaceId 无效")
        card = keys.sandbox_dingtalk_card(track_id)
        async with redis(request).pipeline(transaction=True) as pipe:
            # Written only if new: a reused outTrackId changes nothing of the card.
            pipe.hsetnx(card, "created", str(time.time()))
            pipe.hsetnx(card, "template", str(body["cardTemplateId"]))
            pipe.hsetnx(card, "final", "0")
            pipe.expire(card, TTL_S)
            new, *_ = await pipe.execute()
        if not new:
            return _error(400, "invalidParameter.outTrackId.duplicate", "outTrackId 重复")
        entry = {
            "kind": "card",
            "op": "create",
            "out_track_id": track_id,
            "space": space,
            "at_users": at_users,
            "params": params,
        }
        await record(request, entry)
        space_type = space.split("//", 1)[1].split(".", 1)[0]
        result = {
            "outTrackId": track_id,
            "deliverResults": [{"spaceType": space_type, "success": True}],
        }
        return web.json_response({"success": True, "result": result})

    async def streaming(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _bad_token()
        body = await _body(request)
        track_id, guid = str(body.get("outTrackId") or ""), body.get("guid")
        content, key = body.get("content"), body.get("key")
        if not isinstance(guid, str) or not guid or not isinstance(key, str) or not key:
            return _error(400, "param.empty", "guid/key 为空")
        if not isinstance(content, str) or body.get("isFull") is not True:
            return _error(400, "invalidParameter", "content/isFull")
        final = body.get("isFinalize") is True
        outcome = await redis(request).eval(
            _STREAM_LUA,
            2,
            keys.sandbox_dingtalk_card(track_id),
            keys.sandbox_dingtalk_guids(track_id),
            guid,
            content,
            "1" if final else "0",
            str(TTL_S),
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "gone":
            return _error(400, "invalidParameter.outTrackId.notExist", "卡片不存在")
        if outcome == "final":
            return _error(400, "invalidParameter.card.finalized", "卡片已完成输出")
        if outcome == "guid":
            return _error(400, "invalidParameter.guid.duplicate", "guid 重复")
        entry = {
            "kind": "card",
            "op": "update",
            "out_track_id": track_id,
            "key": key,
            "text": content,
            "finalize": final,
            "error": body.get("isError") is True,
        }
        await record(request, entry)
        return web.json_response({"success": True, "result": True})

    async def update_instance(request: web.Request) -> web.Response:
        if not await authorised(request):
            return _bad_token()
        body = await _body(request)
        track_id, params = str(body.get("outTrackId") or ""), _params(body)
        if not await redis(request).exists(keys.sandbox_dingtalk_card(track_id)):
            return _error(400, "invalidParameter.outTrackId.notExist", "卡片不存在")
        if params is None:
            return _error(400, "invalidParameter", "cardParamMap")
        entry = {
            "kind": "card",
            "op": "status",
            "out_track_id": track_id,
            "flow_status": params.get("flowStatus", ""),
            "params": params,
        }
        await record(request, entry)
        return web.json_response({"success": True, "result": True})

    async def sent(request: web.Request) -> web.Response:
        try:
            start = max(0, int(request.query.get("since", "0")))
        except ValueError:
            return web.json_response({"error": "since: a number"}, status=400)
        events, following = await journal.since(redis(request), keys.SANDBOX_DINGTALK_SENT, start)
        return web.json_response({"events": events, "next": following})

    async def upload(request: web.Request) -> web.Response:
        # Not DingTalk's: where `bot simulate dingtalk --image/--voice` puts the file a user
        # sends, answered with the downloadCode its message then carries.
        if not await authorised(request):
            return _bad_token()
        data = await request.read()
        if not data or len(data) > MAX_UPLOAD_BYTES:
            return _error(400, "invalidParameter", "文件为空或过大")
        code = "sandbox-" + secrets.token_urlsafe(16)
        stored = keys.sandbox_dingtalk_media(code)
        kind = request.content_type or "application/octet-stream"
        await redis(request).hset(stored, mapping={"data": data, "content_type": kind})
        await redis(request).expire(stored, keys.SANDBOX_MEDIA_TTL_S)
        return web.json_response({"downloadCode": code})

    async def message_file(request: web.Request) -> web.Response:
        # 下载机器人接收消息的文件内容: a downloadCode for a temporary downloadUrl, here on the
        # stand-in's own host (the worker follows a downloadUrl only to DingTalk's hosts or
        # its configured API's).
        if not await authorised(request):
            return _bad_token()
        code = str((await _body(request)).get("downloadCode") or "")
        if not code or not await redis(request).exists(keys.sandbox_dingtalk_media(code)):
            return _error(400, "invalidParameter.downloadCode", "downloadCode 无效或已过期")
        return web.json_response(
            {"downloadUrl": f"{request.scheme}://{request.host}{BASE}/files/{code}"}
        )

    async def file(request: web.Request) -> web.Response:
        found = await redis(request).hgetall(
            keys.sandbox_dingtalk_media(request.match_info["code"])
        )
        if not found:
            return web.Response(status=404, text="expired")
        kind = found[b"content_type"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        return web.Response(body=found[b"data"], content_type=kind)

    app.router.add_post(f"{BASE}/media", upload)
    app.router.add_post(f"{BASE}/v1.0/robot/messageFiles/download", message_file)
    app.router.add_get(f"{BASE}/files/{{code}}", file)
    app.router.add_post(f"{BASE}/v1.0/oauth2/accessToken", access_token)
    app.router.add_post(f"{BASE}/robot/sendBySession", session_webhook)
    app.router.add_post(f"{BASE}/v1.0/robot/oToMessages/batchSend", oto)
    app.router.add_post(f"{BASE}/v1.0/robot/groupMessages/send", group)
    app.router.add_post(f"{BASE}/v1.0/card/instances/createAndDeliver", create_and_deliver)
    app.router.add_put(f"{BASE}/v1.0/card/streaming", streaming)
    app.router.add_put(f"{BASE}/v1.0/card/instances", update_instance)
    app.router.add_get(f"{BASE}/sent", sent)
