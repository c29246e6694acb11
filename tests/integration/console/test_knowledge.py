"""The knowledge pages over HTTP: an editor uploads (as the page's script does, and as a plain
form), follows the job, sees the documents and chunks, tests a question, deletes; agents are
refused; a form without its CSRF field, an oversized upload and a down broker are refused
with nothing stored."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import redis
from sqlmodel import Session, select

from bot.console import audit
from knowledge.models import Document
from tests.integration.console.conftest import csrf_of

FAQ = (
    "question,answer,similar\n"
    "滤网多久换一次,建议每 6 个月更换一次滤网，重度污染地区 3 个月。,"
    "滤网什么时候换|多长时间换滤网\n"
    "净化器有噪音怎么办,请检查滤网是否装好，并把风速调低一档。,净化器声音大\n"
).encode()
GUIDE = "# 保修说明\n\n整机保修一年，电机保修三年。\n\n## 退换货\n\n七天无理由退货。\n".encode()


def _files(*files: tuple[str, bytes], csrf: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if csrf is not None:
        form.add_field("csrf_token", csrf)  # first, as the page's form sends it
    for name, content in files:
        form.add_field("files", content, filename=name, content_type="application/octet-stream")
    return form


async def _job_done(c: Any, job_id: str) -> dict[str, Any]:
    for _ in range(400):
        resp = await c.client.get(f"/console/knowledge/jobs/{job_id}")
        assert resp.status == 200
        job = await resp.json()
        if job["status"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _knowledge_actions(c: Any) -> list[tuple[str, str]]:
    entries = reversed(audit.recent(c.engine, actor="li"))
    return [(e.action, e.target) for e in entries if e.action.startswith("knowledge.")]


async def _editor(console: Any, celery_worker: Any, **core: Any) -> Any:
    c = await console(**core)
    celery_worker(c.settings)
    c.add("li", "editor")
    await c.sign_in("li")
    return c


async def test_upload_follow_browse_test_and_delete(console, celery_worker) -> None:
    c = await _editor(console, celery_worker)
    start = await c.client.get("/console/")
    assert start.url.path == "/console/knowledge"  # an editor starts at the knowledge pages
    page = await c.client.get("/console/knowledge/shop")
    assert "这个知识库还没有文档" in await page.text()
    token = csrf_of(await page.text())

    # The page's script: one file per request, CSRF in a header, JSON back.
    resp = await c.client.post(
        "/console/knowledge/shop/upload",
        data=_files(("faq.csv", FAQ)),
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    assert queued["files"] == ["faq.csv"]
    job = await _job_done(c, queued["job_id"])
    assert job["status"] == "done"
    assert [(r["outcome"], r["chunks"]) for r in job["results"]] == [("added", 2)]

    # A plain form (no script): the CSRF field first, redirected back to the page.
    resp = await c.client.post(
        "/console/knowledge/shop/upload", data=_files(("../../guide.md", GUIDE), csrf=token)
    )
    assert resp.status == 200
    assert resp.url.query.get("queued") == "1"
    assert "已提交 1 个文件" in await resp.text()
    for _ in range(200):
        docs = await (await c.client.get("/console/knowledge/shop/documents")).text()
        if "guide.md" in docs:
            break
        await asyncio.sleep(0.05)
    assert "faq.csv" in docs
    assert "guide.md" in docs
    assert "../" not in docs

    listing = await (await c.client.get("/console/knowledge")).text()
    assert '<a href="/console/knowledge/shop">shop</a>' in listing
    # "shop" is not a base the bot answers from: it still uses the sample folder, and says so.
    assert 'id="from-folder"' in listing
    assert "examples/knowledge" in listing

    with Session(c.engine) as s:
        faq = s.exec(select(Document).where(Document.source == "faq.csv")).one()
    chunks = await (await c.client.get(f"/console/knowledge/shop/documents/{faq.id}")).text()
    assert "滤网多久换一次" in chunks
    assert "建议每 6 个月更换一次滤网" in chunks
    assert "滤网什么时候换 · 多长时间换滤网" in chunks

    tested = await (
        await c.client.get("/console/knowledge/shop", params={"q": "滤网要多久换"})
    ).text()
    hits = tested[tested.index('<ol class="hits">') :]
    # The FAQ entry first, with its score and the answer the bot would give.
    assert hits.index("滤网多久换一次") < hits.index("guide.md")
    assert "建议每 6 个月更换一次滤网" in hits
    assert re.search(r'class="score"[^>]*>0\.\d{3}<', hits)
    assert "净化器有噪音怎么办" not in hits

    page = await c.client.get("/console/knowledge/shop")
    deleted = await c.client.post(
        f"/console/knowledge/shop/documents/{faq.id}/delete",
        data={"csrf_token": csrf_of(await page.text())},
    )
    assert "文档已删除" in await deleted.text()
    assert "faq.csv" not in await (await c.client.get("/console/knowledge/shop/documents")).text()
    gone = await c.client.get(f"/console/knowledge/shop/documents/{faq.id}")
    assert gone.status == 404

    assert _knowledge_actions(c) == [
        ("knowledge.upload", "kb:shop"),
        ("knowledge.upload", "kb:shop"),
        ("knowledge.delete", "kb:shop"),
    ]


async def test_refusals_store_nothing(console, celery_worker) -> None:
    c = await _editor(console, celery_worker, upload_max_bytes=64 * 1024)
    token = csrf_of(await (await c.client.get("/console/knowledge/shop")).text())
    uploads = c.settings.core.data_dir / "uploads"

    def stored() -> list[str]:
        return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []

    # No CSRF field at all, or a wrong one first: refused before a byte is written.
    refused = await c.client.post("/console/knowledge/shop/upload", data=_files(("a.md", GUIDE)))
    assert refused.status == 403
    refused = await c.client.post(
        "/console/knowledge/shop/upload", data=_files(("a.md", GUIDE), csrf="x" * 43)
    )
    assert refused.status == 403
    # Over BOT_UPLOAD_MAX_BYTES: 413 and the partial file removed.
    big = _files(("big.md", b"x" * (70 * 1024)), csrf=token)
    assert (await c.client.post("/console/knowledge/shop/upload", data=big)).status == 413
    # A form with no file part.
    empty = await c.client.post(
        "/console/knowledge/shop/upload",
        data=_files(csrf=token),
        headers={"Accept": "application/json"},
    )
    assert empty.status == 400
    assert (await empty.json())["error"] == "没有收到文件，请选择要上传的文件。"
    # Bad names and unknown jobs.
    assert (await c.client.get("/console/knowledge/open", params={"name": "a b/c"})).status == 400
    assert (await c.client.get("/console/knowledge/jobs/" + "0" * 32)).status == 404
    assert (await c.client.get("/console/knowledge/jobs/nope")).status == 404
    assert stored() == []
    assert _knowledge_actions(c) == []


async def test_upload_while_redis_refuses_writes_is_503_and_keeps_nothing(
    console, private_redis
) -> None:
    """Redis out of memory (noeviction): the job cannot be recorded or queued; the files go.

    The web process runs on a Redis of this test's own: a memory limit on the shared one
    would fail the tests running beside it.
    """
    c = await console(redis_url=private_redis.url)
    c.add("li", "editor")
    await c.sign_in("li")
    token = csrf_of(await (await c.client.get("/console/knowledge/shop")).text())
    own = redis.Redis.from_url(private_redis.url)
    try:
        own.config_set("maxmemory", 1)
        resp = await c.client.post(
            "/console/knowledge/shop/upload",
            data=_files(("faq.csv", FAQ)),
            headers={"X-CSRF-Token": token, "Accept": "application/json"},
        )
    finally:
        own.config_set("maxmemory", 0)
        own.close()
    assert resp.status == 503
    assert "没有保存" in (await resp.json())["error"]
    uploads = c.settings.core.data_dir / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert _knowledge_actions(c) == []


async def test_agents_may_not_open_the_knowledge_pages(console) -> None:
    c = await console()
    c.add("wang", "agent")
    await c.sign_in("wang")
    page = await c.client.get("/console/knowledge")
    assert page.status == 403
    assert "没有权限" in await page.text()
    nav = await (await c.client.get("/console/inbox")).text()
    assert "/console/knowledge" not in nav
