"""`bot simulate dingtalk`: a signed robot message whose sessionWebhook is a local listener.

With `--stream`, the message's sessionWebhook is the sandbox stand-in's
(bot/web/sandbox/dingtalk.py: DINGTALK_API_BASE=http://127.0.0.1:PORT/sandbox/dingtalk) and
what the bot then asks of DingTalk is read back from it: the message's AI card as it is
delivered and updated, one line each with the seconds since the message was sent and the
card's whole text then, until its flowStatus is set (FINISHED or FAILED); or the markdown
reply, when no card template is configured.

With `--image FILE` / `--voice FILE` (trial mode only, as `--stream`), the file is put on the
stand-in (``POST /sandbox/dingtalk/media``, answered with a downloadCode) and sent as a
``picture`` or ``audio`` message naming that code; the worker exchanges it through
``robot/messageFiles/download`` and fetches it as a user's, and the reply is shown.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.cli.simulate.common import configured, http_session, post_webhook
from bot.domain import DEFAULT_APP
from bot.settings import DingTalkSettings, Settings

SANDBOX_PATH = "/sandbox/dingtalk"
SENT = f"{SANDBOX_PATH}/sent"
NO_STAND_IN = (
    "--stream reads the sandbox DingTalk API: run the server with BOT_SANDBOX=1 (bot up sets it)"
    " and DINGTALK_API_BASE=DINGTALK_OAPI_BASE=http://127.0.0.1:PORT/sandbox/dingtalk"
)
NO_MEDIA_STAND_IN = (
    "--image/--voice with dingtalk need trial mode: BOT_SANDBOX=1 and "
    "DINGTALK_API_BASE=http://127.0.0.1:PORT/sandbox/dingtalk (DingTalk serves a message's "
    "files only for a real message)"
)
POLL_S = 0.2
# After a markdown reply or the card's end, further parts of a long answer come within this.
SETTLE_S = 1.0
# The template's flowStatus values (adapters/dingtalk/cards.py).
FLOWS = {"3": "FINISHED", "5": "FAILED"}


async def dingtalk(
    base: str,
    settings: Settings,
    text: str,
    group: bool,
    user: str,
    wait_s: float,
    app_name: str = DEFAULT_APP,
    stream: bool = False,
    image: Path | None = None,
    voice: Path | None = None,
) -> int:
    """POST a signed robot message whose sessionWebhook is a local listener; print the reply.

    The listener runs on 127.0.0.1, so the reply arrives when the worker runs on this host.
    With `stream`, show the AI card (or reply) as the sandbox stand-in sees it instead;
    `image` / `voice` go through the stand-in too (see module).
    """
    app_settings = configured(
        settings, "dingtalk", app_name, DingTalkSettings, "DINGTALK_APP_KEY, DINGTALK_APP_SECRET"
    )
    media = image or voice
    if media is not None:
        if not _stand_in(app_settings.api_base):
            print(NO_MEDIA_STAND_IN, file=sys.stderr)
            return 2
        kind = "picture" if image is not None else "audio"
        return await _stream(
            base, app_settings, text, group, user, wait_s, app_name, media=(kind, media)
        )
    if stream:
        return await _stream(base, app_settings, text, group, user, wait_s, app_name)
    return await _listen(base, app_settings, text, group, user, wait_s, app_name)


def _message(
    app_settings: DingTalkSettings,
    text: str,
    group: bool,
    user: str,
    msg_id: str,
    webhook: str,
    content: tuple[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, str], bytes]:
    """A signed robot message: `text`, or a (msgtype, content) such as a picture."""
    from adapters.dingtalk import simulate as dingtalk_simulate

    now_ms = int(time.time() * 1000)
    msgtype, body_content = content or ("text", None)
    body = dingtalk_simulate.robot_body(
        text,
        msg_id=msg_id,
        staff_id=user,
        conversation_id=_conversation(group, user),
        session_webhook=webhook,
        create_at_ms=now_ms,
        group=group,
        robot_code=app_settings.robot_code or app_settings.app_key,
        msgtype=msgtype,
        content=body_content,
    )
    secret = app_settings.app_secret.get_secret_value()
    headers = dingtalk_simulate.robot_headers(app_secret=secret, timestamp_ms=now_ms)
    return headers, json.dumps(body, ensure_ascii=False).encode("utf-8")


def _conversation(group: bool, user: str) -> str:
    return "cidSimulatedGroup" if group else f"cidSimulated-{user}"


async def _listen(
    base: str,
    app_settings: DingTalkSettings,
    text: str,
    group: bool,
    user: str,
    wait_s: float,
    app_name: str,
) -> int:
    from aiohttp import web as aioweb

    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def session(request: aioweb.Request) -> aioweb.Response:
        received.put_nowait(await request.json())
        return aioweb.json_response({"errcode": 0, "errmsg": "ok"})

    listener = aioweb.Application()
    listener.router.add_post("/session", session)
    runner = aioweb.AppRunner(listener, access_log=None)
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        msg_id = "msg" + secrets.token_urlsafe(16)
        webhook = f"http://{host}:{port}/session"
        headers, body = _message(app_settings, text, group, user, msg_id, webhook)
        async with http_session(wait_s) as http:
            status, _ = await post_webhook(http, base, "dingtalk", app_name, body, headers=headers)
        if status != 200:
            return 1
        try:
            replies = [await asyncio.wait_for(received.get(), wait_s)]
        except TimeoutError:
            print(f"no reply on the sessionWebhook within {wait_s:.0f}s", file=sys.stderr)
            return 1
        await asyncio.sleep(0.5)  # let the remaining parts of a long reply arrive
        while not received.empty():
            replies.append(received.get_nowait())
    finally:
        await runner.cleanup()
    for message in replies:
        print(f"sessionWebhook: {message.get('markdown', {}).get('text', message)}")
    return 0


def _stand_in(api_base: str) -> bool:
    """Whether the app's API base is a sandbox stand-in (any host and port)."""
    return urlsplit(api_base).path.rstrip("/") == SANDBOX_PATH


async def _stream(
    base: str,
    app_settings: DingTalkSettings,
    text: str,
    group: bool,
    user: str,
    wait_s: float,
    app_name: str,
    media: tuple[str, Path] | None = None,
) -> int:
    from adapters.dingtalk import cards

    if not _stand_in(app_settings.api_base):
        print(NO_STAND_IN, file=sys.stderr)
        return 2
    msg_id = "msg" + secrets.token_urlsafe(16)
    # DingTalk's sessionWebhook is on its oapi host; the stand-in serves it beside the API.
    webhook = f"{app_settings.api_base.rstrip('/')}/robot/sendBySession?session={msg_id}"
    content = None
    if media is not None:
        code = await _upload(app_settings, media[1], wait_s)
        if code is None:
            return 1
        sent: dict[str, Any] = {"downloadCode": code}
        if media[0] == "audio":
            sent["duration"] = 1000  # no `recognition`: the bot transcribes it, or answers so
        content = (media[0], sent)
    headers, body = _message(app_settings, text, group, user, msg_id, webhook, content)
    ours = Ours(
        track_id=cards.out_track_id(app_name, msg_id),
        session=msg_id,
        user=user,
        conversation=_conversation(group, user),
        group=group,
    )
    async with http_session(wait_s) as http:
        cursor = await _cursor(http, f"{base}{SENT}")
        if cursor is None:
            print(NO_STAND_IN, file=sys.stderr)
            return 2
        sent_at = time.time()
        status, _ = await post_webhook(http, base, "dingtalk", app_name, body, headers=headers)
        if status != 200:
            return 1
        return await _watch(http, f"{base}{SENT}", cursor, ours, sent_at, wait_s)


async def _upload(app_settings: DingTalkSettings, path: Path, wait_s: float) -> str | None:
    """The downloadCode the stand-in gives the file at `path`; None (said why) when not."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    api = app_settings.api_base.rstrip("/")
    credentials = {
        "appKey": app_settings.app_key,
        "appSecret": app_settings.app_secret.get_secret_value(),
    }
    async with http_session(wait_s) as http:
        async with http.post(f"{api}/v1.0/oauth2/accessToken", json=credentials) as resp:
            token = str((await resp.json(content_type=None)).get("accessToken") or "")
        headers = {"x-acs-dingtalk-access-token": token}
        async with http.post(f"{api}/media", data=data, headers=headers) as resp:
            answer = await resp.json(content_type=None)
    code = answer.get("downloadCode") if isinstance(answer, dict) else None
    if not isinstance(code, str) or not code:
        print(f"uploading {path.name} failed: {answer}", file=sys.stderr)
        return None
    return code


@dataclass(frozen=True, slots=True)
class Ours:
    """What marks the stand-in's entries that answer our message."""

    track_id: str
    session: str
    user: str
    conversation: str
    group: bool

    def card(self, event: dict[str, Any]) -> bool:
        return event.get("kind") == "card" and event.get("out_track_id") == self.track_id

    def reply(self, event: dict[str, Any]) -> bool:
        """A markdown reply to our message: on its session, or through the robot OpenAPI to
        our chat (its sessionWebhook not used)."""
        if event.get("kind") != "message":
            return False
        if event.get("via") == "session":
            return bool(event.get("session") == self.session)
        if self.group:
            return bool(
                event.get("via") == "group" and event.get("conversation") == self.conversation
            )
        return event.get("via") == "oto" and self.user in (event.get("user_ids") or [])


async def _cursor(http: aiohttp.ClientSession, url: str) -> int | None:
    """Where the stand-in's list ends now; None when there is no stand-in at `url`."""
    try:
        async with http.get(url, params={"since": "0"}) as resp:
            if resp.status != 200:
                return None
            return int((await resp.json())["next"])
    except (aiohttp.ClientError, ValueError, KeyError, TypeError):
        return None


async def _watch(
    http: aiohttp.ClientSession,
    url: str,
    cursor: int,
    ours: Ours,
    sent_at: float,
    wait_s: float,
) -> int:
    """Print our card's updates (or markdown replies) as they arrive; 0 once it ended
    FINISHED or replies came, 1 if it ended FAILED or nothing ended in time."""
    outcome: int | None = None
    settled_at = 0.0  # when the last ending or reply was seen
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        async with http.get(url, params={"since": str(cursor)}) as resp:
            data = await resp.json()
        cursor = int(data["next"])
        for event in data["events"]:
            line = _line(event, ours)
            if line is None:
                continue
            print(f"{_ago(event, sent_at)} {line}", flush=True)
            if event.get("kind") == "message":
                outcome = 0 if outcome is None else outcome
                settled_at = time.monotonic()
            elif event.get("op") == "status" and event.get("flow_status") in FLOWS:
                outcome = 0 if event["flow_status"] == "3" else 1
                settled_at = time.monotonic()
        if outcome is not None and time.monotonic() - settled_at > SETTLE_S:
            return outcome
        await asyncio.sleep(POLL_S)
    if outcome is not None:
        return outcome
    print(f"not finished within {wait_s:.0f}s", file=sys.stderr)
    return 1


def _line(event: dict[str, Any], ours: Ours) -> str | None:
    """How an entry of ours shows (None: not ours): the card's whole text at each step."""
    if ours.reply(event):
        return f"reply: {_one_line(event.get('text'))}"
    if not ours.card(event):
        return None
    op = event.get("op")
    if op == "create":
        params = event.get("params") or {}
        at = " ".join(f"@{u}" for u in event.get("at_users") or [])
        shown = next((v for k, v in params.items() if k != "flowStatus"), "")
        return f"[card{' ' + at if at else ''}] {_one_line(shown)}"
    if op == "update":
        mark = "[final] " if event.get("finalize") else ""
        mark += "[error] " if event.get("error") else ""
        return f"{mark}{_one_line(event.get('text'))}"
    flow = str(event.get("flow_status") or "")
    return f"[{FLOWS.get(flow, 'flowStatus ' + flow)}]"


def _ago(event: dict[str, Any], sent_at: float) -> str:
    return f"+{float(event.get('at') or sent_at) - sent_at:6.2f}s"


def _one_line(text: Any) -> str:
    return str(text or "").replace("\n", " ⏎ ")  # one line per update
