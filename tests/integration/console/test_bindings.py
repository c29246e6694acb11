"""The customer bindings page over HTTP: an admin binds (checked as the admin API checks),
searches, pages, rebinds and unbinds, each audited; an agent reads; an editor may not."""

from __future__ import annotations

import json
import re

from bot.console import audit
from bot.console.pages.bindings import PER_PAGE
from bot.orders.bindings import BindingStore
from tests.integration.console.conftest import csrf_of


def _users(page: str) -> list[str]:
    table = re.search(r'<table class="list" id="bindings">(.*?)</table>', page, re.S)
    return re.findall(r"<td><code>([^<]+)</code></td><td><code>", table.group(1)) if table else []


async def test_an_admin_binds_searches_and_unbinds(console) -> None:
    c = await console()
    c.add("boss", "admin")
    store = BindingStore(c.engine)
    for n in range(PER_PAGE + 2):  # two pages
        store.bind("wecom", "default", f"wx-{n:03d}", f"C{n:04d}", "import")
    await c.sign_in("boss")
    client = c.client
    page = await (await client.get("/console/bindings")).text()
    assert 'href="/console/bindings" aria-current="page"' in page
    assert len(_users(page)) == PER_PAGE
    assert "批量导入" in page  # how it was bound
    more = await (await client.get("/console/bindings?page=2")).text()
    assert len(_users(more)) == 2
    assert 'rel="prev"' in more
    assert 'rel="next"' not in more
    found = await (await client.get("/console/bindings", params={"q": "c0007"})).text()
    assert _users(found) == ["wx-007"]  # by customer id, any case
    token = csrf_of(page)

    # Refusals: no CSRF; what the admin API refuses (unknown platform, no customer, too long).
    new = {"platform": "feishu", "app": "", "user_id": " ou_123 ", "customer_id": "C9001"}
    assert (await client.post("/console/bindings", data=new)).status == 403
    for bad, reason in (
        ({**new, "platform": "qq"}, "unknown platform"),
        ({**new, "customer_id": ""}, "customer_id is required"),
        ({**new, "customer_id": "C" * 65}, "customer_id is at most 64 characters"),
    ):
        resp = await client.post("/console/bindings", data={"csrf_token": token, **bad})
        text = await resp.text()
        assert resp.status == 400, bad
        assert f"无法绑定：{reason}" in text
        assert 'value="ou_123"' in text  # kept (trimmed)
    added = await client.post("/console/bindings", data={"csrf_token": token, **new})
    text = await added.text()
    assert "已绑定" in text
    assert _users(text) == ["ou_123"]
    assert store.get("feishu", "default", "ou_123").customer_id == "C9001"
    moved = await client.post(
        "/console/bindings", data={"csrf_token": token, **new, "customer_id": "C9002"}
    )
    assert "已改绑" in await moved.text()

    key = {"platform": "feishu", "app": "default", "user_id": "ou_123"}
    assert (await client.post("/console/bindings/unbind", data=key)).status == 403
    gone = await client.post("/console/bindings/unbind", data={"csrf_token": token, **key})
    assert "已解除绑定" in await gone.text()
    assert store.get("feishu", "default", "ou_123") is None
    again = await client.post("/console/bindings/unbind", data={"csrf_token": token, **key})
    assert again.status == 404

    entries = [e for e in audit.recent(c.engine) if e.target == "binding:feishu/default/ou_123"]
    assert [e.action for e in entries] == ["binding.remove", "binding.add", "binding.add"]
    removed, rebound, first = entries
    assert json.loads(rebound.before)["customer_id"] == "C9001"
    assert json.loads(rebound.after)["customer_id"] == "C9002"
    assert first.before == ""
    assert json.loads(removed.before)["customer_id"] == "C9002"
    assert removed.after == ""


async def test_agents_read_bindings_and_editors_may_not(console) -> None:
    c = await console()
    c.add("wang", "agent")
    c.add("li", "editor")
    BindingStore(c.engine).bind("web", "default", "w-1", "C1", "proof")
    await c.sign_in("wang")
    page = await (await c.client.get("/console/bindings")).text()
    assert _users(page) == ["w-1"]
    assert "用户验证" in page
    assert "/console/bindings/unbind" not in page  # no unbind, no add form
    assert 'method="post" action="/console/bindings"' not in page
    token = csrf_of(page)
    key = {"platform": "web", "app": "default", "user_id": "w-1", "csrf_token": token}
    assert (await c.client.post("/console/bindings/unbind", data=key)).status == 403
    new = {**key, "customer_id": "C2"}
    assert (await c.client.post("/console/bindings", data=new)).status == 403
    await c.client.post("/console/logout", data={"csrf_token": token})
    await c.sign_in("li")
    assert (await c.client.get("/console/bindings")).status == 403
