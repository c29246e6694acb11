"""A fake 微信客服 API (gettoken, kf/sync_msg, kf/send_msg, kf/send_msg_on_event,
kf/service_state/trans).

The test scripts the message log of the account with `add`; kf/sync_msg serves it in pages of
`page_size` from the cursor asked for (``cur-{offset}``), like the real cursor, and records
every cursor it was asked for. The callback `Token` must be one the test issued with
`new_sync_token` (else 95007). Welcome codes work once. `fail_next` (FakeState) injects
HTTP failures or errcodes into the next calls of any endpoint; tokens expire as in the
WeCom fake.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, injected_failure, record
from tests.fakes.wecom_api import _error


@dataclass
class WeComKfFakeState(FakeState):
    """Credentials, the account's message log, what was synced and what was sent."""

    corp_id: str = "ww-fake-corp"
    secret: str = "fake-kf-secret"
    open_kfid: str = "wkFAKE"
    page_size: int = 2
    issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    sync_tokens: set[str] = field(default_factory=set)
    cursors_seen: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    welcomes: list[dict[str, Any]] = field(default_factory=list)
    welcome_codes: set[str] = field(default_factory=set)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    # media_id -> (bytes, content type) served by media/get (pictures customers sent).
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # media_id -> the file name media/get gives in Content-Disposition (raw UTF-8 in quotes,
    # as WeCom does): a file message names only its media id.
    media_names: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def issue(self) -> str:
        with self.lock:
            token = f"kftok-{len(self.issued) + 1}"
            self.issued.append(token)
            return token

    def expire_current(self) -> None:
        with self.lock:
            self.expired.add(self.issued[-1])

    def token_errcode(self, token: str) -> int:
        with self.lock:
            if not token:
                return 41001
            if token in self.expired:
                return 42001
            return 0 if token in self.issued else 40014

    def new_sync_token(self) -> str:
        with self.lock:
            token = f"ENC{next(self._ids):08d}Sync"
            self.sync_tokens.add(token)
            return token

    def add(self, **entry: Any) -> dict[str, Any]:
        """Append one msg_list entry; the defaults make a customer text."""
        with self.lock:
            n = next(self._ids)
            item: dict[str, Any] = {
                "msgid": entry.pop("msgid", f"msg{n:06d}"),
                "open_kfid": self.open_kfid,
                "send_time": entry.pop("send_time", 1_700_000_000 + n),
                "origin": entry.pop("origin", 3),
            }
            item.update(entry)
            self.messages.append(item)
            return item

    def text(self, external_userid: str, content: str, **kw: Any) -> dict[str, Any]:
        return self.add(
            external_userid=external_userid,
            msgtype="text",
            text={"content": content},
            **kw,
        )

    def enter_session(self, external_userid: str, welcome_code: str) -> dict[str, Any]:
        with self.lock:
            self.welcome_codes.add(welcome_code)
        return self.add(
            origin=4,
            msgtype="event",
            event={
                "event_type": "enter_session",
                "open_kfid": self.open_kfid,
                "external_userid": external_userid,
                "scene": "123",
                "scene_param": "abc",
                "welcome_code": welcome_code,
            },
        )

    def status_change(self, external_userid: str, change_type: int) -> dict[str, Any]:
        """A session_status_change event (1 a servicer took it, 3 ended)."""
        return self.add(
            origin=4,
            msgtype="event",
            event={
                "event_type": "session_status_change",
                "open_kfid": self.open_kfid,
                "external_userid": external_userid,
                "change_type": change_type,
                "new_servicer_userid": "zhangsan",
            },
        )

    def page(self, cursor: str) -> dict[str, Any] | None:
        with self.lock:
            if cursor and not cursor.startswith("cur-"):
                return None
            start = int(cursor.removeprefix("cur-")) if cursor else 0
            end = min(start + self.page_size, len(self.messages))
            return {
                "errcode": 0,
                "errmsg": "ok",
                "next_cursor": f"cur-{end}",
                "has_more": 1 if end < len(self.messages) else 0,
                "msg_list": [dict(m) for m in self.messages[start:end]],
            }


def _text_error(body: Any) -> tuple[int, str] | None:
    text = body.get("text") if isinstance(body, dict) else None
    content = text.get("content") if isinstance(text, dict) else None
    if body.get("msgtype") != "text" or not isinstance(content, str) or not content:
        return 44004, "empty content"
    if len(content.encode("utf-8")) > 2048:
        return 45002, "content size out of limit"
    return None


def make_wecom_kf_app(state: WeComKfFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def gettoken(request: web.Request) -> web.Response:
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        if request.query.get("corpid") != state.corp_id:
            return _error(40013, "invalid corpid")
        if request.query.get("corpsecret") != state.secret:
            return _error(40001, "invalid credential")
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": state.issue(), "expires_in": 7200}
        )

    async def _checked(request: web.Request) -> tuple[Any, web.Response | None]:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return rec.json, injected
        errcode = state.token_errcode(request.query.get("access_token", ""))
        if errcode:
            return rec.json, _error(errcode, "access_token invalid, missing or expired")
        if not isinstance(rec.json, dict):
            return rec.json, _error(40058, "invalid json body")
        return rec.json, None

    async def sync_msg(request: web.Request) -> web.Response:
        body, problem = await _checked(request)
        if problem is not None:
            return problem
        if body.get("open_kfid") != state.open_kfid:
            return _error(95000, "invalid open_kfid")
        if body.get("token") not in state.sync_tokens:
            return _error(95007, "invalid msg token")
        if body.get("limit") != 1000:
            return _error(40058, "unexpected limit")
        cursor = body.get("cursor", "")
        with state.lock:
            state.cursors_seen.append(cursor)
        page = state.page(cursor)
        if page is None:
            return _error(95010, "invalid cursor")
        return web.json_response(page)

    async def send_msg(request: web.Request) -> web.Response:
        body, problem = await _checked(request)
        if problem is not None:
            return problem
        if body.get("open_kfid") != state.open_kfid:
            return _error(95000, "invalid open_kfid")
        if not body.get("touser"):
            return _error(40058, "touser required")
        if (text_problem := _text_error(body)) is not None:
            return _error(*text_problem)
        with state.lock:
            msg_id = f"sent-{len(state.sent) + 1}"
            state.sent.append(
                {"touser": body["touser"], "content": body["text"]["content"], "msgid": msg_id}
            )
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msg_id})

    async def send_msg_on_event(request: web.Request) -> web.Response:
        body, problem = await _checked(request)
        if problem is not None:
            return problem
        with state.lock:
            known = body.get("code") in state.welcome_codes
            if known:
                state.welcome_codes.discard(body["code"])
        if not known:
            # A code is good once, for 20 s.
            return _error(95002, "invalid welcome code")
        if (text_problem := _text_error(body)) is not None:
            return _error(*text_problem)
        with state.lock:
            msg_id = f"welcome-{len(state.welcomes) + 1}"
            state.welcomes.append(
                {"code": body["code"], "content": body["text"]["content"], "msgid": msg_id}
            )
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msg_id})

    async def service_state_trans(request: web.Request) -> web.Response:
        body, problem = await _checked(request)
        if problem is not None:
            return problem
        if body.get("open_kfid") != state.open_kfid:
            return _error(95000, "invalid open_kfid")
        service_state = body.get("service_state")
        if service_state not in (0, 1, 2, 3, 4) or not body.get("external_userid"):
            return _error(40058, "invalid service_state or external_userid")
        if service_state == 3 and not body.get("servicer_userid"):
            return _error(95014, "servicer_userid required")
        with state.lock:
            state.transfers.append(dict(body))
        return web.json_response({"errcode": 0, "errmsg": "ok", "msg_code": "MSG_CODE"})

    app = web.Application()
    app.router.add_post("/cgi-bin/kf/service_state/trans", service_state_trans)

    async def media_get(request: web.Request) -> web.Response:
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        errcode = state.token_errcode(request.query.get("access_token", ""))
        if errcode:
            return _error(errcode, "access_token invalid, missing or expired")
        media_id = request.query.get("media_id", "")
        found = state.media.get(media_id)
        if found is None:
            return _error(40007, "invalid media_id")
        name = state.media_names.get(media_id)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'} if name else {}
        return web.Response(body=found[0], content_type=found[1], headers=headers)

    app.router.add_get("/cgi-bin/media/get", media_get)
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/kf/sync_msg", sync_msg)
    app.router.add_post("/cgi-bin/kf/send_msg", send_msg)
    app.router.add_post("/cgi-bin/kf/send_msg_on_event", send_msg_on_event)
    return app
