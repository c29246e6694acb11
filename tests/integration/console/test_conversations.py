"""The conversation pages over HTTP: the transcript shows what the bot did for each answer
(its kind, the passages it found with their scores, the tool calls with arguments and
results); the list filters by channel, answer kind and date; the CSV export holds the same
selection, is safe to open in a spreadsheet, and is audited."""

from __future__ import annotations

import csv
import io
import re

from sqlmodel import Session, select

from bot.console import audit
from bot.db.models import Conversation, TurnRecord
from tests.fakes.openai_server import FakeToolCall, ScriptedReply
from tests.integration.conftest import faq_answer, wait_for
from tests.integration.webchat import as_user

FAQ_QUESTION = "怎么退货"


def _conv(c, external_id: str) -> Conversation:
    with Session(c.engine) as s:
        return s.exec(select(Conversation).where(Conversation.external_id == external_id)).one()


def _turns(c) -> list[TurnRecord]:
    with Session(c.engine) as s:
        return list(s.exec(select(TurnRecord).order_by(TurnRecord.id)))


async def _ask(c, user: str, text: str) -> None:
    resp = await c.client.post("/api/chat", json={**await as_user(c.client, user), "text": text})
    assert resp.status == 200, await resp.text()


async def test_the_transcript_shows_what_the_bot_did(console, celery_worker, fakes) -> None:
    c = await console(faq_direct_score=0.8)  # a word-for-word FAQ question needs no model
    celery_worker(c.settings)
    c.add("boss", "admin")
    await c.sign_in("boss")
    await _ask(c, "web-trace", FAQ_QUESTION)
    await wait_for(lambda: len(_turns(c)) == 1)
    fakes.vllm.script(
        ScriptedReply(tool_calls=(FakeToolCall("search_knowledge", {"query": "保修多久"}),)),
        "整机保修一年。",
    )
    await _ask(c, "web-trace", "我想问问保修的事情")
    await wait_for(lambda: len(_turns(c)) == 2)
    first, second = _turns(c)
    assert (first.outcome, first.backend) == ("faq", "faq")
    assert first.confidence is not None
    assert first.confidence >= 0.8
    assert (second.outcome, second.backend) == ("model", "vllm")

    conv = _conv(c, "web-trace")
    page = await (await c.client.get(f"/console/conversations/{conv.id}")).text()
    assert faq_answer(FAQ_QUESTION) in page
    assert "FAQ 直接回答" in page
    assert "模型回答" in page
    assert re.search(r'<span class="score">0\.\d{3}</span>', page)  # passages with scores
    assert "search_knowledge({&#34;query&#34;: &#34;保修多久&#34;})" in page
    assert "保修" in page[page.index("search_knowledge(") :]  # the tool's result
    assert "模型调用 2 次" in page
    # The live fragment carries the same details.
    fragment = await (await c.client.get(f"/console/conversations/{conv.id}/messages")).text()
    assert 'id="turn-' in fragment
    assert "search_knowledge(" in fragment


async def test_filters_and_a_csv_that_is_safe_in_a_spreadsheet(
    console, celery_worker, wecom_app, fakes
) -> None:
    c = await console(faq_direct_score=0.8)  # a word-for-word FAQ question needs no model
    celery_worker(c.settings)
    c.add("boss", "admin")
    await c.sign_in("boss")
    await _ask(c, "web-filter", FAQ_QUESTION)
    await _ask(c, "web-formula", '=HYPERLINK("http://evil")')
    query, body = wecom_app.callback("你好，请问营业时间", user="wx-filter")
    assert (await c.client.post("/webhooks/wecom", params=query, data=body)).status == 200
    await wait_for(lambda: len(_turns(c)) == 3)

    async def listed(**params: str) -> str:
        resp = await c.client.get("/console/conversations", params=params)
        assert resp.status == 200
        return await resp.text()

    everything = await listed()
    assert all(u in everything for u in ("web-filter", "web-formula", "wx-filter"))
    web_only = await listed(platform="web")
    assert "web-filter" in web_only
    assert "wx-filter" not in web_only
    faq_only = await listed(outcome="faq")
    assert "web-filter" in faq_only
    assert "web-formula" not in faq_only
    assert "wx-filter" not in faq_only
    assert "web-filter" not in await listed(since="2999-01-01")
    assert "web-filter" in await listed(until="2999-01-01")
    bad = await c.client.get("/console/conversations", params={"since": "yesterday"})
    assert bad.status == 400
    assert "日期格式应为" in await bad.text()

    resp = await c.client.get("/console/conversations.csv", params={"platform": "web"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith("\ufeff".encode())  # Excel opens it as UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {r["platform"] for r in rows} == {"web"}
    assert {r["customer"] for r in rows} == {"web-filter", "web-formula"}
    said = [(r["customer"], r["direction"], r["text"], r["outcome"]) for r in rows]
    assert ("web-filter", "in", FAQ_QUESTION, "") in said
    assert ("web-filter", "out", faq_answer(FAQ_QUESTION), "faq") in said
    # A formula from a customer is text in the spreadsheet, never run.
    assert ("web-formula", "in", '\'=HYPERLINK("http://evil")', "") in said
    (entry,) = [
        e for e in audit.recent(c.engine, actor="boss") if e.action == "conversations.export"
    ]
    assert '"platform": "web"' in entry.after
    assert '"rows": 4' in entry.after
