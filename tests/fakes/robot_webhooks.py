"""Fake group-robot webhooks: WeCom 群机器人, DingTalk and Feishu custom robots.

Each checks what the real one checks and answers in its format:

- ``POST /cgi-bin/webhook/send?key=KEY``: unknown key → errcode 93000; a markdown body
  over 4096 bytes → 40058; else ``{"errcode": 0, "errmsg": "ok"}``.
- ``POST /robot/send?access_token=T[&timestamp=MS&sign=S]``: unknown token → 300001; with
  a secret set, a missing/wrong sign or a timestamp more than an hour off → 310000.
- ``POST /open-apis/bot/v2/hook/{id}``: unknown id → code 19001; with a secret set, a
  body ``sign``/``timestamp`` that do not match → 19021; else ``{"code": 0, ...}``.

The signatures are recomputed here independently of bot/handoff/notify.py. Accepted notices land
in `state.notices` as (kind, body).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, record


@dataclass
class RobotFakeState(FakeState):
    wecom_key: str = "wecom-robot-key"
    dingtalk_token: str = "dingtalk-robot-token"
    dingtalk_secret: str = ""
    feishu_hook: str = "feishu-hook-id"
    feishu_secret: str = ""
    notices: list[tuple[str, Any]] = field(default_factory=list)
    refused: list[tuple[str, Any]] = field(default_factory=list)

    def accepted(self, kind: str) -> list[Any]:
        with self.lock:
            return [body for k, body in self.notices if k == kind]


STATE = web.AppKey("state", RobotFakeState)
BAD_HOOK = "param invalid: incoming webhook access token invalid"
BAD_SIGN = "sign match fail or timestamp is not within one hour from current time"


async def _wecom(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    failure = state.take_failure()
    if failure is not None:
        return web.json_response(failure.body or {}, status=failure.status)
    if rec.query.get("key") != state.wecom_key:
        return _refuse(state, "wecom", {"errcode": 93000, "errmsg": "invalid webhook url"})
    body = rec.json or {}
    if body.get("msgtype") == "markdown":
        content = body.get("markdown", {}).get("content", "")
        if not content or len(content.encode()) > 4096:
            return _refuse(state, "wecom", {"errcode": 40058, "errmsg": "markdown.content"})
    elif body.get("msgtype") != "text":
        return _refuse(state, "wecom", {"errcode": 40008, "errmsg": "invalid message type"})
    return _accept(state, "wecom", body, {"errcode": 0, "errmsg": "ok"})


def _dingtalk_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


async def _dingtalk(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    failure = state.take_failure()
    if failure is not None:
        return web.json_response(failure.body or {}, status=failure.status)
    if rec.query.get("access_token") != state.dingtalk_token:
        return _refuse(state, "dingtalk", {"errcode": 300001, "errmsg": "token is not exist"})
    if state.dingtalk_secret:
        ts, sign = rec.query.get("timestamp", ""), rec.query.get("sign", "")
        fresh = ts.isdigit() and abs(int(ts) / 1000 - time.time()) < 3600
        # aiohttp has already percent-decoded the query, as DingTalk does.
        if not fresh or not hmac.compare_digest(sign, _dingtalk_sign(state.dingtalk_secret, ts)):
            return _refuse(state, "dingtalk", {"errcode": 310000, "errmsg": "sign not match"})
    body = rec.json or {}
    if body.get("msgtype") not in {"text", "markdown"}:
        return _refuse(state, "dingtalk", {"errcode": 40035, "errmsg": "缺少参数 msgtype"})
    return _accept(state, "dingtalk", body, {"errcode": 0, "errmsg": "ok"})


def _feishu_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


async def _feishu(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    failure = state.take_failure()
    if failure is not None:
        return web.json_response(failure.body or {}, status=failure.status)
    if request.match_info["hook"] != state.feishu_hook:
        return _refuse(state, "feishu", {"code": 19001, "msg": BAD_HOOK, "data": {}})
    body = rec.json or {}
    if state.feishu_secret:
        ts, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
        fresh = ts.isdigit() and abs(int(ts) - time.time()) < 3600
        if not fresh or not hmac.compare_digest(sign, _feishu_sign(state.feishu_secret, ts)):
            return _refuse(state, "feishu", {"code": 19021, "msg": BAD_SIGN, "data": {}})
    if body.get("msg_type") not in {"text", "post", "interactive"}:
        return _refuse(state, "feishu", {"code": 9499, "msg": "Bad Request", "data": {}})
    return _accept(state, "feishu", body, {"code": 0, "msg": "success", "data": {}})


def _accept(state: RobotFakeState, kind: str, body: Any, answer: dict[str, Any]) -> web.Response:
    with state.lock:
        state.notices.append((kind, body))
    return web.json_response(answer)


def _refuse(state: RobotFakeState, kind: str, answer: dict[str, Any]) -> web.Response:
    with state.lock:
        state.refused.append((kind, answer))
    return web.json_response(answer)  # robots answer errors with HTTP 200


def robot_app(state: RobotFakeState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_post("/cgi-bin/webhook/send", _wecom)
    app.router.add_post("/robot/send", _dingtalk)
    app.router.add_post("/open-apis/bot/v2/hook/{hook}", _feishu)
    return app
