"""The dashboard over HTTP: after real turns (an FAQ answer, a model answer, a handoff that
an agent answers) its figures count them; agents may not open it."""

from __future__ import annotations

import re

from tests.integration.console.conftest import csrf_of
from tests.integration.webchat import as_user


async def _ask(c, user: str, text: str) -> None:
    resp = await c.client.post("/api/chat", json={**await as_user(c.client, user), "text": text})
    assert resp.status == 200, await resp.text()


def _cells(html: str, label: str) -> list[str]:
    """The cells of the table row whose first cell links or reads `label`."""
    row = re.search(rf"<tr><td>(?:<a [^>]*>)?{re.escape(label)}(?:</a>)?</td>(.*?)</tr>", html)
    assert row, f"no row {label!r}"
    return re.findall(r"<td>(.*?)</td>", row.group(1))


async def test_the_figures_count_what_happened(console, celery_worker) -> None:
    c = await console(faq_direct_score=0.8)
    celery_worker(c.settings)
    c.add("boss", "admin")
    await c.sign_in("boss")
    await _ask(c, "web-d1", "怎么退货")  # FAQ, no model
    await _ask(c, "web-d2", "你们家的净化器适合多大的房间")  # the fake model answers
    await _ask(c, "web-d3", "转人工")

    inbox = await (await c.client.get("/console/inbox/rows")).text()
    conv_id = re.search(r'href="/console/conversations/(\d+)"', inbox).group(1)
    page = await c.client.get(f"/console/conversations/{conv_id}")
    token = csrf_of(await page.text())
    await c.client.post(f"/console/conversations/{conv_id}/claim", data={"csrf_token": token})
    await c.client.post(
        f"/console/conversations/{conv_id}/reply", data={"csrf_token": token, "text": "您好"}
    )

    async def page_text() -> str:
        resp = await c.client.get("/console/dashboard", params={"days": "7"})
        assert resp.status == 200
        return await resp.text()

    html = await page_text()
    assert _cells(html, "FAQ 直接回答")[0] == "1"
    assert _cells(html, "模型回答")[0] == "1"
    assert _cells(html, "转人工")[0] == "1"
    assert _cells(html, "vllm")[0] == "1"  # one model call, with its tokens
    assert int(_cells(html, "vllm")[1]) > 0
    per_day = re.search(r"<th scope=\"col\">web</th>", html)
    assert per_day, "the per-day table has a web column"
    # The embedded figures the charts draw from.
    assert '"per_day": {"web": [' in html
    assert re.search(r'<span class="figure">1</span><span>转人工</span>', html)
    # The agent answered: nobody is waiting, and the wait was measured (seconds).
    assert re.search(r'<span class="figure">0</span><span>正在等待人工</span>', html)
    assert re.search(r'<span class="figure">\d+ / \d+ s</span><span>人工响应等待', html)


async def test_agents_are_refused_and_bad_periods_fall_back(console) -> None:
    c = await console()
    c.add("wang", "agent")
    c.add("li", "editor")
    await c.sign_in("wang")
    assert (await c.client.get("/console/dashboard")).status == 403
    await c.client.post("/console/logout", data={"csrf_token": await c.csrf("/console/inbox")})
    await c.sign_in("li")
    resp = await c.client.get("/console/dashboard", params={"days": "-5"})
    assert resp.status == 200
    assert 'href="?days=14" aria-current="page"' in await resp.text()
