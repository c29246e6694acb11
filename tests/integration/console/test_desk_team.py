"""The desk as a team over HTTP: agents go online and away, conversations handed to the humans
go to the online agents in turn (or wait in the queue), an agent passes a conversation to a
colleague, customers hear their place in the queue and are answered while they wait, and
long waits are flagged in the inbox. Real Redis, PostgreSQL, Celery; web chat customers and
a WeCom customer through the fake WeCom API."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlmodel import Session, select

from bot import keys
from bot.console import audit
from bot.db.engine import get_engine
from bot.db.models import Conversation
from bot.handoff import presence
from bot.web.state import REDIS
from tests.integration.conftest import wait_for
from tests.integration.console.conftest import Console, csrf_of
from tests.integration.webchat import as_user

ASSIGNED = "已为您转接人工客服，客服人员马上为您服务，请稍候。"


def queued(n: int) -> str:
    return f"已为您转接人工客服，当前排队第 {n} 位，请稍候。"


def waiting(n: int) -> str:
    return f"已收到，客服马上就来，您当前排队第 {n} 位。"


@pytest.fixture
def desk(make_settings, make_client, fakes, wecom_app, celery_worker):
    """start(**handoff) → a Console on a web process with a worker, HANDOFF_* overridden."""

    async def start(**handoff: Any) -> Console:
        settings = make_settings(
            **fakes.sections(wecom_app),
            core={"rate_per_minute": 0, "rate_per_day": 0},
            handoff=handoff,
        )
        client = await make_client(settings)
        celery_worker(settings)
        return Console(client, settings, get_engine(settings.core.effective_database_url()))

    return start


async def _ask(c: Console, user: str, text: str) -> str:
    """A web chat customer writes; the reply they read ("" for none)."""
    resp = await c.client.post("/api/chat", json={**await as_user(c.client, user), "text": text})
    return str((await resp.json())["reply"])


def _conv_id(c: Console, external_id: str) -> int:
    with Session(c.engine) as s:
        conv = s.exec(select(Conversation).where(Conversation.external_id == external_id)).one()
        return conv.id or 0


async def _post(client: Any, path: str, page: str, **data: str) -> Any:
    """Post a form of `page` (a console path) as the browser would, with its CSRF token."""
    token = csrf_of(await (await client.get(page)).text())
    return await client.post(path, data={**data, "csrf_token": token})


async def test_online_agents_get_conversations_in_turn_and_pass_them_on(desk, make_client) -> None:
    c = await desk()
    for name in ("wang", "li"):
        c.add(name, "agent")
    c.add("chen", "editor")
    await c.sign_in("wang")
    li = await make_client(c.settings)
    await c.sign_in("li", client=li)
    page = await (await c.client.get("/console/inbox")).text()
    assert "离线" in page
    assert "上线接待" in page
    assert "当前没有客服在线" in page

    online = await _post(c.client, "/console/presence", "/console/inbox", status="online")
    assert online.url.path == "/console/inbox"  # back where the toggle was pressed
    assert "设为暂离" in await online.text()
    # An id past PostgreSQL's INTEGER is no conversation: 404, not a database error.
    assert (await c.client.get("/console/conversations/99999999999")).status == 404
    beat = await c.client.get("/console/presence")
    assert await beat.json() == {"status": "online", "late": 0}
    await _post(li, "/console/presence", "/console/inbox", status="away")
    rows = await (await c.client.get("/console/inbox/rows")).text()
    assert "在线</span> wang" in rows
    assert "暂离</span> li" in rows

    # Only wang is online: the first customer goes to wang and is told so.
    assert await _ask(c, "web-t1", "转人工") == ASSIGNED
    await _post(li, "/console/presence", "/console/inbox", status="online")
    # Both online: the next customers go to li, then wang again.
    assert await _ask(c, "web-t2", "转人工") == ASSIGNED
    assert await _ask(c, "web-t3", "转人工") == ASSIGNED
    first, second, third = (_conv_id(c, f"web-t{n}") for n in (1, 2, 3))
    claims = await c.client.get("/console/inbox/rows")
    text = await claims.text()
    for conv_id, agent in ((first, "wang"), (second, "li"), (third, "wang")):
        row = text.split(f'href="/console/conversations/{conv_id}"', 1)[0].rsplit("<tr", 1)[1]
        assert f"<td>{agent}</td>" in row

    # wang passes the first customer to li; the select marks who is online.
    page = await (await c.client.get(f"/console/conversations/{first}")).text()
    assert '<option value="li">li（在线）</option>' in page
    assert "chen" not in page.split('id="transfer-to"', 1)[1].split("</select>", 1)[0]
    bad = await _post(
        c.client, f"/console/conversations/{first}/transfer", "/console/inbox", to="chen"
    )
    assert bad.status == 400  # an editor does not answer customers
    moved = await _post(
        c.client, f"/console/conversations/{first}/transfer", "/console/inbox", to="li"
    )
    assert moved.url.query.get("done") == "transferred"
    assert "接待人：li" in await moved.text()
    again = await _post(
        c.client, f"/console/conversations/{first}/transfer", "/console/inbox", to="wang"
    )
    assert again.status == 409  # no longer wang's to pass on
    # li now answers the customer: the reply form is li's, and the customer reads it.
    page = await (await li.get(f"/console/conversations/{first}")).text()
    assert 'id="reply-text"' in page
    customer = await as_user(c.client, "web-t1")
    start = await (await c.client.get("/api/chat/messages", params=customer)).json()
    sent = await _post(
        li, f"/console/conversations/{first}/reply", "/console/inbox", text="您好，我是小李"
    )
    assert sent.status == 200
    polled = await c.client.get("/api/chat/messages", params={**customer, "after": start["last"]})
    assert [m["text"] for m in (await polled.json())["messages"]] == ["您好，我是小李"]
    [entry] = [e for e in audit.recent(c.engine) if e.action == "conversation.transfer"]
    assert (entry.actor, entry.target) == ("wang", f"conversation:{first}")
    assert (json.loads(entry.before), json.loads(entry.after)) == (
        {"agent": "wang"},
        {"agent": "li"},
    )

    # Signing out leaves the desk; a closed browser sends no more requests, so its agent is
    # offline once the TTL has passed.
    redis = c.client.app[REDIS]
    now = time.time()
    assert await presence.online(redis, now=now) == ["li", "wang"]
    await _post(li, "/console/logout", "/console/inbox")
    assert await presence.online(redis, now=now) == ["wang"]
    assert 0 < await redis.ttl(keys.PRESENCE_ONLINE) <= keys.PRESENCE_TTL_S
    assert await presence.online(redis, now=now + keys.PRESENCE_TTL_S + 1) == []
    assert await presence.touch(redis, "wang", now=now + keys.PRESENCE_TTL_S + 1) == "offline"


async def test_the_queue_answers_waiting_customers_and_flags_long_waits(
    desk, fakes, wecom_app
) -> None:
    c = await desk(wait_alert_s=1)
    c.add("wang", "agent")
    await c.sign_in("wang")  # signed in but not online: nothing is assigned
    assert await _ask(c, "web-q1", "转人工") == queued(1)
    assert await _ask(c, "web-q2", "转人工") == queued(2)
    query, body = wecom_app.callback("转人工", user="wx-q3")
    await c.client.post("/webhooks/wecom", params=query, data=body)
    await wait_for(lambda: [m["content"] for m in fakes.wecom.sent] == [queued(3)])

    # The WeCom customer types three lines while waiting: one acknowledgement, all kept.
    for line in ("在吗", "我的订单 QH2024", "快点"):
        query, body = wecom_app.callback(line, user="wx-q3")
        await c.client.post("/webhooks/wecom", params=query, data=body)
    wx = _conv_id(c, "wx-q3")

    async def all_three_kept() -> bool:
        page = await (await c.client.get(f"/console/conversations/{wx}/messages")).text()
        return all(line in page for line in ("在吗", "我的订单 QH2024", "快点"))

    for _ in range(100):
        if await all_three_kept():
            break
        await asyncio.sleep(0.1)
    assert await all_three_kept()
    assert [m["content"] for m in fakes.wecom.sent] == [queued(3), waiting(3)]
    ttl = await c.client.app[REDIS].ttl(keys.handoff_acknowledged(wx))
    assert 0 < ttl <= 60  # HANDOFF_WAITING_EVERY_S

    # Past HANDOFF_WAIT_ALERT_S the unclaimed ones are flagged and counted in the title.
    await asyncio.sleep(1.1)
    first = _conv_id(c, "web-q1")
    await _post(c.client, f"/console/conversations/{first}/claim", "/console/inbox")
    inbox = await (await c.client.get("/console/inbox")).text()
    assert "<title>(2) 人工接待" in inbox
    assert "2 个会话已等待超过 1 秒" in inbox
    assert inbox.count('class="free late"') == 2
    assert inbox.count('<span class="badge">超时</span>') == 2
    assert 'class="mine"' in inbox  # claimed: no longer an alert
    # Every page's heartbeat carries the count for the badge on the inbox link.
    assert (await (await c.client.get("/console/presence")).json())["late"] == 2
    assert 'id="late-badge" hidden data-label="{n} 位客户等待超时"' in inbox

    # The claimed customer is the agent's now (no acknowledgement); the others move up.
    assert await _ask(c, "web-q1", "你好") == ""
    assert await _ask(c, "web-q2", "还要等多久") == waiting(1)
    assert await _ask(c, "web-q2", "？") == ""  # once a minute, not once a line


async def test_an_agent_coming_online_gets_the_waiting_customers(desk, make_client) -> None:
    """Nobody online: customers queue. An agent comes online: the queue is dealt out to the
    online agents in turn, oldest first, each customer told a person has it, each audited."""
    c = await desk()
    for name in ("wang", "li"):
        c.add(name, "agent")
    await c.sign_in("wang")
    li = await make_client(c.settings)
    await c.sign_in("li", client=li)
    await _post(li, "/console/presence", "/console/inbox", status="online")
    await _post(li, "/console/presence", "/console/inbox", status="away")
    assert await _ask(c, "web-b1", "转人工") == queued(1)
    assert await _ask(c, "web-b2", "转人工") == queued(2)
    assert await _ask(c, "web-b3", "转人工") == queued(3)
    first, second, third = (_conv_id(c, f"web-b{n}") for n in (1, 2, 3))
    customer = await as_user(c.client, "web-b1")
    start = await (await c.client.get("/api/chat/messages", params=customer)).json()

    await _post(li, "/console/presence", "/console/inbox", status="online")  # li alone: all
    await _post(c.client, "/console/presence", "/console/inbox", status="online")  # none left
    rows = await (await c.client.get("/console/inbox/rows")).text()
    for conv_id in (first, second, third):
        row = rows.split(f'href="/console/conversations/{conv_id}"', 1)[0].rsplit("<tr", 1)[1]
        assert "<td>li</td>" in row
    polled = await c.client.get("/api/chat/messages", params={**customer, "after": start["last"]})
    assert [m["text"] for m in (await polled.json())["messages"]] == [ASSIGNED]
    assigned = sorted(
        (e.target, json.loads(e.after)["agent"])
        for e in audit.recent(c.engine)
        if e.action == "conversation.assign"
    )
    assert assigned == sorted((f"conversation:{n}", "li") for n in (first, second, third))
    # A message now reaches li; no queue acknowledgement any more.
    assert await _ask(c, "web-b2", "还在吗") == ""
