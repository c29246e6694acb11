"""Unanswered questions become FAQ entries, over HTTP: the bot declines three wordings of one
question, the console groups them, an editor turns the group into an entry, the sheet is
ingested and the bot answers the next customer from it; edits check the sheet's version;
export and delete."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from urllib.parse import unquote

from sqlmodel import Session, select

from bot.console import audit
from bot.db.models import TurnRecord
from knowledge.models import Document
from tests.integration.conftest import wait_for
from tests.integration.console.conftest import csrf_of
from tests.integration.webchat import as_user

ASKED = ("能用比特币付款吗", "能用比特币付款么", "可以用比特币付款吗")
ANSWER = "暂不支持比特币，可以用微信支付、支付宝或银行卡付款。"


async def _ask(c, user: str, text: str) -> dict:
    resp = await c.client.post("/api/chat", json={**await as_user(c.client, user), "text": text})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def _turns(c) -> int:
    with Session(c.engine) as s:
        return len(s.exec(select(TurnRecord)).all())


def _sheet(c) -> Document | None:
    with Session(c.engine) as s:
        return s.exec(select(Document).where(Document.source == "console-faq.csv")).first()


async def _until_sheet(c, check) -> Document:
    for _ in range(300):
        doc = _sheet(c)
        if check(doc):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError("the sheet was not ingested")


async def test_unanswered_questions_become_an_faq_the_bot_answers(
    console, celery_worker, fakes
) -> None:
    c = await console(faq_direct_score=0.8)
    celery_worker(c.settings)
    c.add("li", "editor")
    await c.sign_in("li")
    # No model: the bot declines these, or answers from a weak knowledge match.
    fakes.vllm.fail_next(100, status=500)
    fakes.dashscope.fail_next(100, status=500)
    for i, text in enumerate(ASKED):
        await _ask(c, f"web-btc-{i}", text)
    await wait_for(lambda: _turns(c) == 3)

    page = await (await c.client.get("/console/knowledge/unanswered")).text()
    row = re.search(r"<tr>\s*<td><a [^>]*>(.*?)</a></td>\s*<td>(\d+)</td>", page)
    assert row, page
    assert row.group(1) in ASKED
    assert row.group(2) == "3"
    link = re.search(r'href="(/console/knowledge/default/faq/0/new\?[^"]+)"', page).group(1)
    form = await (await c.client.get(link.replace("&amp;", "&"))).text()
    question = re.search(r'name="question" value="([^"]*)"', form).group(1)
    similar = re.search(r'name="similar" rows="5">([^<]*)</textarea>', form).group(1)
    assert question == row.group(1)
    assert sorted([question, *similar.split("\n")]) == sorted(ASKED)

    saved = await c.client.post(
        "/console/knowledge/default/faq/0/new",
        data={
            "csrf_token": csrf_of(form),
            "version": "",
            "question": question,
            "answer": ANSWER,
            "similar": similar,
        },
    )
    assert "已保存" in await saved.text()
    doc = await _until_sheet(c, lambda d: d is not None and d.chunk_count == 1)
    # The next customer asking is answered from the new entry, still with no model (once
    # the worker's index has noticed the change: it checks every few seconds).
    replies = []
    for i in range(30):
        replies.append((await _ask(c, f"web-btc-next-{i}", "可以用比特币付款吗"))["reply"])
        if replies[-1] == ANSWER:
            break
        await asyncio.sleep(0.5)
    assert replies[-1] == ANSWER, replies

    # Editing checks the version: a stale form is refused, nothing overwritten.
    entry = f"/console/knowledge/default/faq/{doc.id}/0"
    edit = await (await c.client.get(entry)).text()
    stale = await c.client.post(
        entry,
        data={"csrf_token": csrf_of(edit), "version": "stale", "question": "x", "answer": "y"},
    )
    assert stale.status == 409
    assert "刚被其他人修改过" in await stale.text()
    version = re.search(r'name="version" value="([0-9a-f]*)"', edit).group(1)
    changed = await c.client.post(
        entry,
        data={
            "csrf_token": csrf_of(edit),
            "version": version,
            "question": question,
            "answer": ANSWER + "（2026 年起）",
            "similar": similar,
        },
    )
    assert changed.status == 200
    doc = await _until_sheet(c, lambda d: d is not None and d.content_hash != version)

    exported = await c.client.get(f"/console/knowledge/default/documents/{doc.id}/faq.csv")
    assert "console-faq.csv" in unquote(exported.headers["Content-Disposition"])
    rows = list(csv.DictReader(io.StringIO((await exported.read()).decode("utf-8-sig"))))
    assert [(r["question"], r["answer"]) for r in rows] == [(question, ANSWER + "（2026 年起）")]

    edit = await (await c.client.get(entry)).text()
    version = re.search(r'name="version" value="([0-9a-f]*)"', edit).group(1)
    deleted = await c.client.post(
        entry, data={"csrf_token": csrf_of(edit), "version": version, "action": "delete"}
    )
    assert deleted.status == 200
    assert _sheet(c) is None  # the last entry gone: the sheet is removed
    actions = [e.action for e in reversed(audit.recent(c.engine, actor="li"))]
    assert [a for a in actions if a.startswith("faq.")] == ["faq.add", "faq.edit", "faq.delete"]


async def test_an_entry_needs_a_question_and_an_answer(console) -> None:
    c = await console()
    c.add("li", "editor")
    await c.sign_in("li")
    form = await (await c.client.get("/console/knowledge/default/faq/0/new")).text()
    resp = await c.client.post(
        "/console/knowledge/default/faq/0/new",
        data={"csrf_token": csrf_of(form), "version": "", "question": "只有问题", "answer": " "},
    )
    assert resp.status == 400
    text = await resp.text()
    assert "请填写标准问题和答案" in text
    assert 'value="只有问题"' in text  # what was typed is kept
    assert _sheet(c) is None
    assert (await c.client.get("/console/knowledge/default/faq/0/7")).status == 404
