"""Canned replies and internal notes over HTTP: admins keep the replies, agents see them in the
reply form; a note stays in the console and never reaches the customer; both audited."""

from __future__ import annotations

from bot.console import audit
from tests.integration.conftest import wait_for
from tests.integration.console.conftest import csrf_of

NOTICE = "已为您转接人工客服，当前排队第 1 位，请稍候。"  # the only one waiting


async def test_canned_replies_and_notes(console, celery_worker, fakes, wecom_app) -> None:
    c = await console()
    celery_worker(c.settings)
    c.add("boss", "admin")
    c.add("wang", "agent")
    await c.sign_in("boss")
    page = await (await c.client.get("/console/canned")).text()
    assert "还没有快捷回复" in page
    bad = await c.client.post(
        "/console/canned", data={"csrf_token": csrf_of(page), "title": "", "text": "x"}
    )
    assert bad.status == 400
    added = await c.client.post(
        "/console/canned",
        data={"csrf_token": csrf_of(page), "title": "问候", "text": "您好，我是人工客服，请讲。"},
    )
    assert "您好，我是人工客服，请讲。" in await added.text()

    query, body = wecom_app.callback("转人工", user="wx-notes")
    await c.client.post("/webhooks/wecom", params=query, data=body)
    await wait_for(lambda: [m["content"] for m in fakes.wecom.sent] == [NOTICE])
    inbox = await (await c.client.get("/console/inbox/rows")).text()
    conv = inbox.split('href="/console/conversations/', 1)[1].split('"', 1)[0]
    page = await (await c.client.get(f"/console/conversations/{conv}")).text()
    noted = await c.client.post(
        f"/console/conversations/{conv}/notes",
        data={"csrf_token": csrf_of(page), "text": "老客户，上次投诉过物流"},
    )
    text = await noted.text()
    assert "备注已保存" in text
    assert "老客户，上次投诉过物流" in text
    assert [m["content"] for m in fakes.wecom.sent] == [NOTICE]  # never sent to the customer

    # An agent who claims sees the canned reply in the reply form, and the note.
    await c.client.post("/console/logout", data={"csrf_token": csrf_of(text)})
    await c.sign_in("wang")
    page = await (await c.client.get(f"/console/conversations/{conv}")).text()
    claimed = await c.client.post(
        f"/console/conversations/{conv}/claim", data={"csrf_token": csrf_of(page)}
    )
    text = await claimed.text()
    assert '<option value="您好，我是人工客服，请讲。">问候</option>' in text
    assert "老客户，上次投诉过物流" in text
    actions = [e.action for e in audit.recent(c.engine)]
    assert "canned.add" in actions
    assert "conversation.note" in actions
    # An editor reads the conversation but may not write notes.
    c.add("li", "editor")
    await c.client.post("/console/logout", data={"csrf_token": csrf_of(text)})
    await c.sign_in("li")
    page = await (await c.client.get(f"/console/conversations/{conv}")).text()
    refused = await c.client.post(
        f"/console/conversations/{conv}/notes", data={"csrf_token": csrf_of(page), "text": "x"}
    )
    assert refused.status == 403
