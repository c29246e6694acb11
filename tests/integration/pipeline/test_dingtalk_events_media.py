"""DingTalk events recorded and media fetched, end to end through a real Celery worker.

Real encrypted event callbacks and signed robot messages over HTTP, real Redis, SQLite and a
Celery worker (thread pool); DingTalk (tokens, group send, messageFiles/download and the
media host) and the models are fake servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlmodel import Session, select

from adapters.dingtalk import simulate as dingtalk_simulate
from bot.agent.documents import FILE_QUESTION
from bot.db.engine import get_engine
from bot.db.models import PlatformEvent
from bot.pipeline import autoreply, files
from bot.settings import Settings
from tests.fakes.base import serve
from tests.fakes.dingtalk_api import DingTalkFakeState, make_dingtalk_app
from tests.integration.conftest import wait_for
from tests.unit.bot.test_file_text import invoice_pdf

AES_KEY = ("dingtalkEvtKey00" * 3)[:43]
EVENT_TOKEN = "dt-evt-token"
WELCOME = "大家好，我是售后机器人，@我提问即可。"
IMAGE = b"\xff\xd8\xff\xe0" + os.urandom(3000)


@pytest.fixture
def dingtalk_api() -> Iterator[tuple[DingTalkFakeState, str]]:
    state = DingTalkFakeState(app_secret=secrets.token_urlsafe(16))
    with serve(make_dingtalk_app(state)) as url:
        yield state, url


@pytest.fixture
def start(
    make_settings, make_client, celery_worker, fakes, wecom_app, dingtalk_api
) -> Callable[..., Any]:
    """Start web app + worker with extra DINGTALK_* fields; returns (client, settings)."""

    async def go(**dingtalk: Any) -> tuple[Any, Settings]:
        state, url = dingtalk_api
        models = fakes.sections(wecom_app)
        settings = make_settings(
            vllm=models["vllm"],
            dashscope=models["dashscope"],
            dingtalk={
                "app_key": state.app_key,
                "app_secret": state.app_secret,
                "robot_code": state.robot_code,
                "token": EVENT_TOKEN,
                "aes_key": AES_KEY,
                "api_base": url,
                "oapi_base": "http://127.0.0.1",
                **dingtalk,
            },
        )
        client = await make_client(settings)
        celery_worker(settings)
        return client, settings

    return go


async def _post_event(client, state: DingTalkFakeState, event: dict[str, Any]) -> None:
    query, body = dingtalk_simulate.build_event(
        event,
        app_key=state.app_key,
        token=EVENT_TOKEN,
        aes_key=AES_KEY,
        timestamp_ms=int(time.time() * 1000),
        nonce=secrets.token_hex(4),
        random_prefix=os.urandom(16),
    )
    resp = await client.post("/webhooks/dingtalk", params=query, data=body)
    assert resp.status == 200, await resp.text()
    assert set(await resp.json()) == {"msg_signature", "timeStamp", "nonce", "encrypt"}


async def _post_media(
    client, state: DingTalkFakeState, url: str, msgtype: str, content: dict[str, Any], msg_id: str
) -> None:
    now_ms = int(time.time() * 1000)
    body = dingtalk_simulate.robot_body(
        "",
        msg_id=msg_id,
        staff_id="manager4220",
        conversation_id="cidMedia==",
        session_webhook=state.session_url(url),
        create_at_ms=now_ms,
        robot_code=state.robot_code,
        msgtype=msgtype,
        content=content,
    )
    headers = dingtalk_simulate.robot_headers(app_secret=state.app_secret, timestamp_ms=now_ms)
    resp = await client.post(
        "/webhooks/dingtalk", data=json.dumps(body, ensure_ascii=False), headers=headers
    )
    assert resp.status == 200, await resp.text()


def _events(settings: Settings) -> list[PlatformEvent]:
    with Session(get_engine(settings.core.effective_database_url())) as session:
        return list(session.exec(select(PlatformEvent).order_by(PlatformEvent.id)))


async def _metric(client, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    return 0.0


async def test_group_join_is_recorded_once_and_the_group_welcomed_once(
    start, dingtalk_api, fakes
) -> None:
    client, settings = await start(group_welcome_text=WELCOME)
    state, _ = dingtalk_api
    before = await _metric(
        client, "bot_platform_events_total", platform="dingtalk", event="chat_add_member"
    )
    event = {
        "EventType": "chat_add_member",
        "CorpId": "dingcorp",
        "ChatId": "chat9",
        "OpenConversationId": "cidGroup==",
        "Operator": "boss01",
        "UserId": ["robot-user", "u2"],
        "TimeStamp": str(int(time.time() * 1000)),
    }
    await _post_event(client, state, event)
    await wait_for(lambda: len(state.sent) == 1)
    (sent,) = state.sent
    assert (sent["via"], sent["openConversationId"], sent["text"]) == (
        "group",
        "cidGroup==",
        WELCOME,
    )
    await wait_for(lambda: len(_events(settings)) == 1)
    (row,) = _events(settings)
    assert (row.platform, row.app, row.event_type, row.conversation_id) == (
        "dingtalk",
        "default",
        "chat_add_member",
        "cidGroup==",
    )
    assert json.loads(row.summary)["UserId"] == ["robot-user", "u2"]
    assert EVENT_TOKEN not in row.summary
    # DingTalk pushes the same event again (new ciphertext, same payload): nothing more.
    await _post_event(client, state, event)
    await asyncio.sleep(1.5)
    assert len(_events(settings)) == 1
    assert len(state.sent) == 1
    # A second join the same day is recorded, but the group is not greeted again.
    await _post_event(client, state, {**event, "UserId": ["u3"]})
    await wait_for(lambda: len(_events(settings)) == 2)
    await asyncio.sleep(1.0)
    assert len(state.sent) == 1
    assert fakes.vllm.matching("/chat/completions") == []
    after = await _metric(
        client, "bot_platform_events_total", platform="dingtalk", event="chat_add_member"
    )
    assert after - before == 2  # the retry was a duplicate, not counted


async def test_check_url_and_group_changes_are_recorded_without_a_welcome(
    start, dingtalk_api
) -> None:
    client, settings = await start()  # DINGTALK_GROUP_WELCOME_TEXT empty: no welcome
    state, _ = dingtalk_api
    await _post_event(client, state, {"EventType": "check_url"})
    await _post_event(
        client,
        state,
        {"EventType": "chat_add_member", "OpenConversationId": "cidG2==", "UserId": ["u1"]},
    )
    await _post_event(client, state, {"EventType": "chat_disband", "ChatId": "chat7"})
    await wait_for(lambda: len(_events(settings)) == 3)
    kinds = sorted(r.event_type for r in _events(settings))
    assert kinds == ["chat_add_member", "chat_disband", "check_url"]
    await asyncio.sleep(1.0)
    assert state.sent == []


async def test_picture_is_saved_and_answered_politely_without_the_model(
    start, dingtalk_api, fakes
) -> None:
    client, settings = await start()
    state, url = dingtalk_api
    state.add_media("pic-code-1", IMAGE, "image/jpeg")
    content = {"downloadCode": "pic-code-1", "pictureDownloadCode": "pic-code-1b"}
    await _post_media(client, state, url, "picture", content, "msgPic-1==")
    await wait_for(lambda: len(state.sent) == 1)
    (sent,) = state.sent
    assert (sent["via"], sent["text"]) == ("session", autoreply.unsupported_reply("image"))
    assert fakes.vllm.matching("/chat/completions") == []
    folder = Path(settings.core.data_dir) / "media" / "dingtalk" / "default"
    (saved,) = list(folder.iterdir())
    assert saved.read_bytes() == IMAGE
    assert saved.name.endswith("-0-image.jpg")
    (exchange,) = state.matching("/robot/messageFiles/download")
    assert exchange.json == {"downloadCode": "pic-code-1", "robotCode": state.robot_code}


async def test_oversized_file_is_not_kept_but_still_answered(start, dingtalk_api) -> None:
    client, settings = await start(media_max_bytes=1000)
    state, url = dingtalk_api
    state.add_media("file-code", os.urandom(5000), "application/pdf")
    content = {"downloadCode": "file-code", "fileName": "报价单.pdf"}
    await _post_media(client, state, url, "file", content, "msgFile-1==")
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["text"] == files.problem_reply("too_large")
    folder = Path(settings.core.data_dir) / "media" / "dingtalk" / "default"
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_a_file_is_read_and_answered_from(start, dingtalk_api) -> None:
    """Files in chat (bot/pipeline/files.py): the PDF's words reach the model."""
    client, _ = await start()
    state, url = dingtalk_api
    state.add_media("file-code-2", invoice_pdf(), "application/octet-stream")
    content = {"downloadCode": "file-code-2", "fileName": "发票.pdf"}
    await _post_media(client, state, url, "file", content, "msgFile-2==")
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["text"] == f"ANSWER: {FILE_QUESTION}"
    assert [r.json["downloadCode"] for r in state.matching("/robot/messageFiles/download")] == [
        "file-code-2"
    ]


async def test_download_url_on_a_foreign_host_is_not_followed(start, dingtalk_api) -> None:
    client, settings = await start()
    state, url = dingtalk_api
    hits: list[str] = []

    async def grab(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"internal data")

    probe = web.Application()
    probe.router.add_get("/{tail:.*}", grab)
    with serve(probe) as probe_url:
        state.download_url_base = probe_url  # as if the answer pointed at an internal host
        state.add_media("pic-ssrf", IMAGE)
        await _post_media(client, state, url, "picture", {"downloadCode": "pic-ssrf"}, "msgS==")
        await wait_for(lambda: len(state.sent) == 1)
    assert hits == []
    folder = Path(settings.core.data_dir) / "media" / "dingtalk" / "default"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert (
        await _metric(client, "bot_media_downloads_total", platform="dingtalk", outcome="refused")
        >= 1
    )


async def test_expired_download_code_still_gets_an_answer(start, dingtalk_api) -> None:
    client, _ = await start()
    state, url = dingtalk_api
    await _post_media(client, state, url, "picture", {"downloadCode": "gone"}, "msgGone==")
    await wait_for(lambda: len(state.sent) == 1)
    assert state.sent[0]["text"] == autoreply.unsupported_reply("image")
    assert len(state.matching("/robot/messageFiles/download")) == 1


async def test_a_redelivered_event_task_adds_no_second_row(make_settings, open_runtime) -> None:
    from adapters.dingtalk import events as dingtalk_events
    from bot.pipeline import events

    settings = make_settings()
    msg = dingtalk_events.event_message(
        {"EventType": "chat_update_title", "ChatId": "chat3", "CorpId": "c"},
        plain=b'{"EventType":"chat_update_title"}',
        app="default",
        now=time.time(),
    )
    rt = await open_runtime(settings)
    assert await events.run(msg, rt) == "recorded"
    assert await events.run(msg, rt) == "duplicate"
    (row,) = _events(settings)
    assert (row.event_type, row.conversation_id) == ("chat_update_title", "chat3")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_event_rows_are_unique_on_both_databases(backend: str, request, tmp_path) -> None:
    from adapters.dingtalk import events as dingtalk_events
    from bot.pipeline import events

    url = (
        f"sqlite:///{tmp_path}/bot.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    engine = get_engine(url)
    unique = secrets.token_hex(6)
    msg = dingtalk_events.event_message(
        {"EventType": "chat_quit", "EventId": unique, "ChatId": "chat5", "UserId": ["u"]},
        plain=b"{}",
        app="default",
        now=time.time(),
    )
    with Session(engine) as session:
        assert events.record(session, msg) is True
        assert events.record(session, msg) is False
        # The session stays usable after the refused insert (rolled back, not poisoned).
        rows = session.exec(
            select(PlatformEvent).where(PlatformEvent.event_id == f"event:{unique}")
        ).all()
    assert [(r.event_type, r.conversation_id) for r in rows] == [("chat_quit", "chat5")]
