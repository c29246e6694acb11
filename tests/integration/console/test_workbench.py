"""The handoff workbench over HTTP: a customer asks for a person, an agent finds them in the
inbox, claims, replies through the customer's own platform, releases; two agents never
answer one customer; every action is in the audit log."""

from __future__ import annotations

import asyncio

from sqlmodel import Session, select

from bot.console import audit
from bot.db.models import Conversation
from tests.integration.conftest import wait_for
from tests.integration.console.conftest import csrf_of
from tests.integration.webchat import as_user

NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting
RETURNED = "人工服务已结束，接下来由智能助手为您服务。"


def _conversation(c, external_id: str) -> Conversation:
    with Session(c.engine) as s:
        return s.exec(select(Conversation).where(Conversation.external_id == external_id)).one()


async def _post(c, path: str, **data: str):
    page = await c.client.get(path.rsplit("/", 1)[0])
    return await c.client.post(path, data={**data, "csrf_token": csrf_of(await page.text())})


async def test_wecom_customer_is_claimed_answered_and_released(
    console, celery_worker, fakes, wecom_app
) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    await c.sign_in("wang")
    assert "当前没有等待人工的会话" in await (await c.client.get("/console/inbox")).text()

    query, body = wecom_app.callback("转人工", user="wx-cust-1")
    assert (await c.client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await wait_for(lambda: [m["content"] for m in fakes.wecom.sent] == [NOTICE])
    conv = _conversation(c, "wx-cust-1")

    rows = await (await c.client.get("/console/inbox/rows")).text()
    assert "wx-cust-1" in rows
    assert "客户要求" in rows
    assert "未认领" in rows
    page = await c.client.get(f"/console/conversations/{conv.id}")
    assert "请先认领此会话再回复" in await page.text()

    claimed = await _post(c, f"/console/conversations/{conv.id}/claim")
    assert claimed.url.query.get("done") == "claimed"
    assert "接待人：wang" in await claimed.text()
    sent = await _post(c, f"/console/conversations/{conv.id}/reply", text="您好，我是客服小王")
    assert "已发送" in await sent.text()
    assert fakes.wecom.sent[-1]["content"] == "您好，我是客服小王"
    assert fakes.wecom.sent[-1]["touser"] == "wx-cust-1"
    # The customer writes again: the bot stays silent, the agent sees it live.
    query, body = wecom_app.callback("我的订单还没到", user="wx-cust-1")
    await c.client.post("/webhooks/wecom", params=query, data=body)

    async def shows_new_message() -> bool:
        return (
            "我的订单还没到"
            in await (await c.client.get(f"/console/conversations/{conv.id}/messages")).text()
        )

    for _ in range(100):
        if await shows_new_message():
            break
        await asyncio.sleep(0.1)
    assert await shows_new_message()
    assert len(fakes.wecom.sent) == 2  # no bot answer while a person holds it

    released = await _post(c, f"/console/conversations/{conv.id}/release")
    assert "已交还机器人" in await released.text()
    assert fakes.wecom.sent[-1]["content"] == RETURNED
    assert "当前没有等待人工的会话" in await (await c.client.get("/console/inbox/rows")).text()
    actions = [e.action for e in reversed(audit.recent(c.engine, actor="wang"))]
    assert actions == ["login", "conversation.claim", "conversation.reply", "conversation.release"]


async def test_two_agents_never_answer_one_customer(console, celery_worker, make_client) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("wang", "agent")
    c.add("li", "agent")
    c.add("boss", "admin")
    resp = await c.client.post(
        "/api/chat", json={**await as_user(c.client, "web-cust-2"), "text": "转人工"}
    )
    assert (await resp.json())["reply"] == NOTICE
    conv = _conversation(c, "web-cust-2")
    await c.sign_in("wang")
    other = await make_client(c.settings)
    await c.sign_in("li", client=other)
    await _post(c, f"/console/conversations/{conv.id}/claim")
    page = await other.get(f"/console/conversations/{conv.id}")
    token = csrf_of(await page.text())
    late = await other.post(f"/console/conversations/{conv.id}/claim", data={"csrf_token": token})
    assert late.status == 409
    assert "此会话已由 wang 认领" in await late.text()
    blocked = await other.post(
        f"/console/conversations/{conv.id}/reply", data={"csrf_token": token, "text": "我来"}
    )
    assert blocked.status == 409
    # An admin may move the claim; then li answers and the web customer reads it.
    admin = await make_client(c.settings)
    await c.sign_in("boss", client=admin)
    token_admin = csrf_of(await (await admin.get(f"/console/conversations/{conv.id}")).text())
    await admin.post(f"/console/conversations/{conv.id}/claim", data={"csrf_token": token_admin})
    rows = await (await admin.get("/console/inbox/rows")).text()
    assert "boss" in rows
    start = await (
        await c.client.get("/api/chat/messages", params=await as_user(c.client, "web-cust-2"))
    ).json()
    sent = await admin.post(
        f"/console/conversations/{conv.id}/reply",
        data={"csrf_token": token_admin, "text": "您好，我是主管"},
    )
    assert sent.status == 200
    polled = await (
        await c.client.get(
            "/api/chat/messages",
            params={**await as_user(c.client, "web-cust-2"), "after": start["last"]},
        )
    ).json()
    assert [m["text"] for m in polled["messages"]] == ["您好，我是主管"]
    claims = [e for e in audit.recent(c.engine) if e.action == "conversation.claim"]
    assert [(e.actor, e.before, e.after) for e in reversed(claims)] == [
        ("wang", '{"agent": ""}', '{"agent": "wang"}'),
        ("boss", '{"agent": "wang"}', '{"agent": "boss"}'),
    ]


async def test_an_editor_reads_conversations_but_cannot_act(console, celery_worker) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("chen", "editor")
    await c.client.post(
        "/api/chat", json={**await as_user(c.client, "web-cust-3"), "text": "转人工"}
    )
    conv = _conversation(c, "web-cust-3")
    await c.sign_in("chen")
    start = await c.client.get("/console/")
    assert start.url.path == "/console/knowledge"  # an editor's own pages come first
    listing = await c.client.get("/console/conversations")
    assert "web-cust-3" in await listing.text()
    page = await c.client.get(f"/console/conversations/{conv.id}")
    text = await page.text()
    assert "转人工" in text
    assert "认领" not in text
    assert (await c.client.get("/console/inbox")).status == 403
    token = csrf_of(text)
    resp = await c.client.post(
        f"/console/conversations/{conv.id}/claim", data={"csrf_token": token}
    )
    assert resp.status == 403
