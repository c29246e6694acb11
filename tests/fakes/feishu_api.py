"""A fake Feishu open API (tenant_access_token, bot/v3/info, message reply/create), real format.

Tokens are ``t-1``, ``t-2``… valid for 7200 s. A test can expire the current token (the next
call answers 99991663) and fail the next N calls with `fail_next` (429, 5xx, a code body), or
every call for a while with `fail_from_now`; a failure with `after` posts the message (or
applies the card update) first (a lost answer).
Like Feishu, a repeated ``uuid`` within the hour returns the first message_id, posts nothing.
Each delivered message records ``text`` (a post flattened, ``<at>`` tags removed) and
``mentions`` (the open_ids @-mentioned); `bot_info_fail` makes bot/v3/info answer 500.

CardKit (streaming cards): `cards` holds each card entity created (`FakeCard`: its element
texts, whether streaming mode is on, every update with its sequence and time). Like Feishu:
without the `cardkit:card:write` scope (`cardkit_scope = False`) every CardKit call answers
99991672; an update whose sequence is not above the card's last answers 300317; one to a card
no longer streaming 300309; more than 10 updates in a second on one card HTTP 429 (99991400).
A reply with msg_type ``interactive`` and ``{"type": "card", "data": {"card_id"}}`` shows a
card: the message records ``card_id`` (its ``text`` is the card's text when it was sent).

Scopes and chats: without the send scope (`message_scope = False`) sending or replying
answers 99991672 naming ``im:message`` / ``im:message:send_as_bot``, in Feishu's body (msg,
error.permission_violations). A chat id of Feishu's own shape (``oc_`` + 32 hex) that is not
in `chats` answers 230001 "invalid receive_id", as for a chat that does not exist; the short
ids tests use (``oc_group``) are taken as existing chats.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.feishu.events import post_to_text
from tests.fakes.base import (
    FakeState,
    RecordedRequest,
    answer_failure,
    injected_failure,
    record,
)

_POST_TAGS = frozenset({"text", "a", "at", "img", "media", "emotion", "md", "code_block", "hr"})
_AT_TAG = re.compile(r'<at user_id="([^"]*)">[^<]*</at>\s?')
_CHAT_ID = re.compile(r"oc_[0-9a-f]{32}")


@dataclass
class FakeCard:
    """One card entity: its markdown elements and every operation on it."""

    card_id: str
    elements: dict[str, str]
    streaming: bool = True
    sequence: int = 0
    # (sequence, element id, full text, time.monotonic()) per content update
    updates: list[tuple[int, str, str, float]] = field(default_factory=list)
    closed_at_sequence: int = 0

    def text(self, element_id: str = "") -> str:
        if element_id:
            return self.elements.get(element_id, "")
        return next(iter(self.elements.values()), "")


@dataclass
class FeishuFakeState(FakeState):
    """Configured credentials, issued tokens and the messages posted, in order."""

    app_id: str = "cli_fake_app"
    app_secret: str = "fake-app-secret"
    # Every token is dead on arrival: the client must give up after one refresh.
    issue_expired: bool = False
    issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    by_uuid: dict[str, str] = field(default_factory=dict)
    repeats: int = 0  # posts not made again: their uuid was seen within the hour
    bot_open_id: str = "ou_fake_bot"
    bot_info_fail: bool = False
    # (message_id, file_key) -> (bytes, content type), served as the message's resources.
    resources: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    # message_id -> (msg_type, body.content JSON text): what GET im/v1/messages/{id} shows.
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)
    cards: dict[str, FakeCard] = field(default_factory=dict)
    cardkit_scope: bool = True  # False: the app lacks cardkit:card:write
    message_scope: bool = True  # False: the app lacks im:message (and send_as_bot)
    chats: set[str] = field(default_factory=set)  # the oc_<32 hex> chats that exist

    def card_messages(self) -> list[dict[str, Any]]:
        """The messages that show a card."""
        with self.lock:
            return [m for m in self.sent if m.get("card_id")]

    def add_resource(
        self, message_id: str, file_key: str, data: bytes, content_type: str = "image/png"
    ) -> None:
        with self.lock:
            self.resources[(message_id, file_key)] = (data, content_type)

    def issue(self) -> str:
        with self.lock:
            token = f"t-{len(self.issued) + 1}"
            self.issued.append(token)
            if self.issue_expired:
                self.expired.add(token)
            return token

    def expire_current(self) -> None:
        """The latest token now answers 99991663 (invalid tenant access token)."""
        with self.lock:
            self.expired.add(self.issued[-1])

    def token_code(self, authorization: str) -> int:
        token = authorization.removeprefix("Bearer ").strip()
        with self.lock:
            if not authorization.startswith("Bearer ") or not token:
                return 99991661
            if token in self.expired or token not in self.issued:
                return 99991663
            return 0

    def deliver(self, message: dict[str, Any]) -> str:
        with self.lock:
            uuid = message.get("uuid") or ""
            if uuid and uuid in self.by_uuid:
                self.repeats += 1
                return self.by_uuid[uuid]
            msg_id = f"om_sent_{len(self.sent) + 1}"
            self.sent.append({**message, "message_id": msg_id})
            if uuid:
                self.by_uuid[uuid] = msg_id
            return msg_id


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    # Feishu answers most API errors with HTTP 400 and a code in the body.
    return web.json_response({"code": code, "msg": msg}, status=status)


def scope_refusal(*scopes: str) -> web.Response:
    """Feishu's 99991672 body: the scopes of which one is needed, in msg and in error."""
    listed = ", ".join(scopes)
    body = {
        "code": 99991672,
        "msg": f"Access denied. One of the following scopes is required: [{listed}]."
        f"应用尚未开通所需的应用身份权限：[{listed}]",
        "error": {
            "message": "Refer to the documentation to fix the error: https://open.feishu.cn/"
            "document/uAjLw4CM/ugTN1YjL4UTN24CO1UjN/trouble-shooting/"
            "how-to-fix-the-99991672-error",
            "permission_violations": [
                {"type": "action_scope_required", "subject": scope} for scope in scopes
            ],
        },
    }
    return web.json_response(body, status=400)


def _post_elements(post: Any) -> list[dict[str, Any]] | None:
    """Every element of a post body ({lang: {title, content}}), None when malformed."""
    if not isinstance(post, dict) or not post:
        return None
    elements: list[dict[str, Any]] = []
    for body in post.values():
        lines = body.get("content") if isinstance(body, dict) else None
        if not isinstance(lines, list) or not lines:
            return None
        for line in lines:
            if not isinstance(line, list):
                return None
            for element in line:
                if not isinstance(element, dict) or element.get("tag") not in _POST_TAGS:
                    return None
                elements.append(element)
    return elements


class ContentError(Exception):
    """A message body Feishu would refuse: ``code`` and message."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg


def parse_content(msg_type: Any, content: Any) -> tuple[str, list[str]]:
    """``(text, mentioned open_ids)`` of a text or post body; ContentError when invalid."""
    # content must be a JSON *string* (docs/protocols/feishu.md#sending-and-replying).
    if not isinstance(content, str):
        raise ContentError(230001, "content must be a string")
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ContentError(230001, "content is not JSON") from exc
    if msg_type == "text":
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text:
            raise ContentError(230001, "empty text")
        return _AT_TAG.sub("", text).strip(), _AT_TAG.findall(text)
    if msg_type == "post":
        elements = _post_elements(data)
        if elements is None:
            raise ContentError(230001, "invalid post content")
        mentions = [str(e.get("user_id")) for e in elements if e.get("tag") == "at"]
        return post_to_text(data, dict.fromkeys(mentions, "")).strip(), mentions
    raise ContentError(230001, "invalid msg_type")


def _content_error(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 230001, "invalid body"
    try:
        parse_content(body.get("msg_type"), body.get("content"))
    except ContentError as exc:
        return exc.code, exc.msg
    limit = 150 * 1024 if body.get("msg_type") == "text" else 30 * 1024
    if len(str(body.get("content")).encode("utf-8")) > limit:
        return 230025, "content too long"
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or len(uuid) > 50):
        return 99992402, "uuid invalid"
    return None


def make_feishu_app(state: FeishuFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def tenant_token(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        body = rec.json if isinstance(rec.json, dict) else {}
        if body.get("app_id") != state.app_id or body.get("app_secret") != state.app_secret:
            return _error(10003, "invalid param", status=200)
        token = state.issue()
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}
        )

    async def _post(request: web.Request, extra: dict[str, Any]) -> web.Response:
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and failure.after:
            answer = _deliver(request, rec, extra)  # posted, but the caller sees the failure
            return await answer_failure(state, failure) or answer
        if (injected := await answer_failure(state, failure)) is not None:
            return injected
        return _deliver(request, rec, extra)

    def _deliver(request: web.Request, rec: RecordedRequest, extra: dict[str, Any]) -> web.Response:
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        if not state.message_scope:
            return scope_refusal("im:message", "im:message:send_as_bot", "im:message:send")
        chat = str(extra.get("receive_id") or "")
        if _CHAT_ID.fullmatch(chat) and chat not in state.chats:
            return _error(
                230001, "Your request contains an invalid request parameter, ext=invalid receive_id"
            )
        if isinstance(rec.json, dict) and rec.json.get("msg_type") == "interactive":
            return _deliver_card(request, rec.json, extra)
        problem = _content_error(rec.json)
        if problem is not None:
            return _error(*problem)
        text, mentions = parse_content(rec.json["msg_type"], rec.json["content"])
        message = {
            "msg_type": rec.json["msg_type"],
            "text": text,
            "mentions": mentions,
            "content": rec.json["content"],
            "uuid": rec.json.get("uuid"),
            "token": request.headers["Authorization"].removeprefix("Bearer "),
            **extra,
        }
        msg_id = state.deliver(message)
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": msg_id}})

    def _deliver_card(
        request: web.Request, body: dict[str, Any], extra: dict[str, Any]
    ) -> web.Response:
        try:
            content = json.loads(body.get("content") or "")
        except (TypeError, ValueError):
            return _error(230001, "content is not JSON")
        card_id = _object(_object(content).get("data")).get("card_id")
        if _object(content).get("type") != "card" or not isinstance(card_id, str):
            return _error(230001, "invalid card content")
        card = state.cards.get(card_id)
        if card is None:
            return _error(230099, "Failed to create card content, card not exist")
        message = {
            "msg_type": "interactive",
            "card_id": card_id,
            "text": card.text(),
            "mentions": [],
            "content": body["content"],
            "uuid": body.get("uuid"),
            "token": request.headers["Authorization"].removeprefix("Bearer "),
            **extra,
        }
        msg_id = state.deliver(message)
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": msg_id}})

    async def _cardkit_gate(request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """What every CardKit call checks first: injected failures, the token, the scope."""
        rec = await record(state, request)
        return _object(rec.json), await _cardkit_refusal(request)

    async def _cardkit_refusal(request: web.Request) -> web.Response | None:
        if (injected := await injected_failure(state)) is not None:
            return injected
        return _cardkit_denial(request)

    def _cardkit_denial(request: web.Request) -> web.Response | None:
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        if not state.cardkit_scope:
            return scope_refusal("cardkit:card:write")
        return None

    async def card_create(request: web.Request) -> web.Response:
        body, refused = await _cardkit_gate(request)
        if refused is not None:
            return refused
        if body.get("type") != "card_json" or not isinstance(body.get("data"), str):
            return _error(10002, "invalid request parameter: type/data")
        try:
            card = _object(json.loads(body["data"]))
        except ValueError:
            return _error(200220, "Failed to generate card content")
        if card.get("schema") != "2.0":
            return _error(200220, "Failed to generate card content")
        config = _object(card.get("config"))
        if config.get("streaming_mode") and config.get("update_multi") is False:
            return _error(300302, "update_multi property is false")
        elements: dict[str, str] = {}
        for element in _object(card.get("body")).get("elements") or []:
            element = _object(element)
            if element.get("tag") == "markdown" and element.get("element_id"):
                elements[str(element["element_id"])] = str(element.get("content") or "")
        with state.lock:
            card_id = f"71{len(state.cards) + 1:017d}"
            state.cards[card_id] = FakeCard(
                card_id, elements, streaming=bool(config.get("streaming_mode"))
            )
        return web.json_response({"code": 0, "msg": "success", "data": {"card_id": card_id}})

    def _sequenced(
        card_id: str, body: dict[str, Any]
    ) -> tuple[FakeCard | None, web.Response | None]:
        card = state.cards.get(card_id)
        if card is None:
            return None, _error(200740, "The card entity does not exist")
        seq = body.get("sequence")
        if not isinstance(seq, int) or not 1 <= seq <= 2_147_483_647:
            return None, _error(10002, "invalid request parameter: sequence")
        if seq <= card.sequence:
            return None, _error(
                300317,
                "The sequence number for operating on the card did not increment consecutively",
            )
        return card, None

    async def card_content(request: web.Request) -> web.Response:
        # A failure with `after`: the card shows the text, the caller sees the failure (an
        # answer lost on the way back, or a caller killed before it read the answer).
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and not failure.after:
            return await answer_failure(state, failure) or _error(500, "injected failure")
        answer = _card_content(request, _object(rec.json))
        return await answer_failure(state, failure) or answer

    def _card_content(request: web.Request, body: dict[str, Any]) -> web.Response:
        if (refused := _cardkit_denial(request)) is not None:
            return refused
        element_id = request.match_info["element_id"]
        with state.lock:
            card, problem = _sequenced(request.match_info["card_id"], body)
            if problem is not None or card is None:
                return problem or _error(200740, "The card entity does not exist")
            if element_id not in card.elements:
                return _error(300301, "The element_id does not exist")
            if not card.streaming:
                return _error(300309, "streaming mode is closed")
            now = time.monotonic()
            if len([u for u in card.updates if now - u[3] < 1.0]) >= 10:
                return web.json_response(
                    {"code": 99991400, "msg": "request trigger frequency limit"}, status=429
                )
            card.sequence = body["sequence"]
            card.elements[element_id] = str(body.get("content") or "")
            card.updates.append((body["sequence"], element_id, card.elements[element_id], now))
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def card_settings(request: web.Request) -> web.Response:
        body, refused = await _cardkit_gate(request)
        if refused is not None:
            return refused
        try:
            settings = _object(json.loads(body.get("settings") or ""))
        except (TypeError, ValueError):
            return _error(10002, "invalid request parameter: settings")
        with state.lock:
            card, problem = _sequenced(request.match_info["card_id"], body)
            if problem is not None or card is None:
                return problem or _error(200740, "The card entity does not exist")
            card.sequence = body["sequence"]
            config = _object(settings.get("config"))
            if "streaming_mode" in config:
                card.streaming = bool(config["streaming_mode"])
                if not card.streaming:
                    card.closed_at_sequence = body["sequence"]
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def reply(request: web.Request) -> web.Response:
        return await _post(request, {"reply_to": request.match_info["message_id"]})

    async def create(request: web.Request) -> web.Response:
        if request.query.get("receive_id_type") != "chat_id":
            return _error(99992402, "receive_id_type unsupported by the fake")
        body = await request.json()
        return await _post(request, {"receive_id": body.get("receive_id")})

    async def bot_info(request: web.Request) -> web.Response:
        await record(state, request)
        if state.bot_info_fail:
            return web.Response(status=500, text="injected failure")
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        bot = {
            "activate_status": 2,
            "app_name": "客服机器人",
            "avatar_url": "https://example.invalid/avatar.png",
            "ip_white_list": [],
            "open_id": state.bot_open_id,
        }
        return web.json_response({"code": 0, "msg": "ok", "bot": bot})

    async def resource(request: web.Request) -> web.StreamResponse:
        # 获取消息中的资源文件: the bytes, or a code as JSON with HTTP 400.
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        if request.query.get("type") not in ("image", "file"):
            return _error(234001, "Invalid request param.")
        key = (request.match_info["message_id"], request.match_info["file_key"])
        found = state.resources.get(key)
        if found is None:
            return _error(234003, "File not in msg.")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def get_message(request: web.Request) -> web.Response:
        # 获取指定消息的内容: data.items[0] with msg_type and body.content (a JSON string).
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        message_id = request.match_info["message_id"]
        found = state.messages.get(message_id)
        if found is None:
            return _error(230001, "message not found")
        item = {"message_id": message_id, "msg_type": found[0], "body": {"content": found[1]}}
        return web.json_response({"code": 0, "msg": "success", "data": {"items": [item]}})

    app = web.Application()
    app.router.add_get("/open-apis/im/v1/messages/{message_id}", get_message)
    app.router.add_get("/open-apis/im/v1/messages/{message_id}/resources/{file_key}", resource)
    app.router.add_get("/open-apis/bot/v3/info", bot_info)
    app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", tenant_token)
    app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", reply)
    app.router.add_post("/open-apis/im/v1/messages", create)
    app.router.add_post("/open-apis/cardkit/v1/cards", card_create)
    app.router.add_put(
        "/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content", card_content
    )
    app.router.add_patch("/open-apis/cardkit/v1/cards/{card_id}/settings", card_settings)
    return app
