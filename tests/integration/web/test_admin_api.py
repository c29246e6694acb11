"""The knowledge-base admin API end to end: real web app, real Celery worker, real Redis.

Uploads are streamed to `data/uploads`, ingested by `workers.tasks.ingest_document` and
followed through `GET /api/kb/jobs/{id}`; the database is SQLite in the test's tmp dir.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

TOKEN = "admin-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}

MANUAL = """# 青禾空气净化器 P1 使用说明

## 滤网更换

滤网建议每 6 个月更换一次。更换时先关机并拔掉电源，打开后盖，取出旧滤网，装入新滤网后合上后盖。

## 保修

整机保修一年，电机保修三年。
"""
FAQ = (
    "question,answer,similar\n"
    "滤网多久换一次,建议每 6 个月更换一次滤网，重度污染地区 3 个月。,"
    "滤网什么时候换|多长时间换滤网\n"
    "净化器有噪音怎么办,请检查滤网是否装好，并把风速调低一档。,净化器声音大\n"
).encode()


@pytest.fixture
async def api(make_settings, make_client, celery_worker) -> Any:
    settings = make_settings(core={"admin_token": TOKEN, "upload_max_bytes": 64 * 1024})
    client = await make_client(settings)
    celery_worker(settings)
    return client


def _form(*files: tuple[str, bytes]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, content in files:
        form.add_field("file", content, filename=name, content_type="application/octet-stream")
    return form


async def _upload_and_wait(api, kb: str, *files: tuple[str, bytes]) -> dict[str, Any]:
    resp = await api.post(f"/api/kb/{kb}/documents", data=_form(*files), headers=AUTH)
    assert resp.status == 202, await resp.text()
    queued = await resp.json()
    assert queued["files"] == [name.rsplit("/", 1)[-1] for name, _ in files]
    assert resp.headers["Location"] == f"/api/kb/jobs/{queued['job_id']}"
    for _ in range(400):
        job_resp = await api.get(f"/api/kb/jobs/{queued['job_id']}", headers=AUTH)
        assert job_resp.status == 200
        job = await job_resp.json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job not finished: {job}")


async def test_without_a_token_configured_the_api_is_disabled(make_settings, make_client) -> None:
    client = await make_client(make_settings())
    resp = await client.get("/api/kb/default/documents", headers=AUTH)
    assert resp.status == 503
    assert (await resp.json())["error"] == (
        "admin API disabled: set BOT_ADMIN_TOKEN or BOT_ADMIN_TOKENS"
    )


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]
)
async def test_a_missing_or_wrong_token_is_401(api, headers) -> None:
    for method, path in [
        ("GET", "/api/kb/default/documents"),
        ("POST", "/api/kb/default/documents"),
        ("GET", "/api/kb/default/search?q=x"),
        ("DELETE", "/api/kb/default/documents/faq.csv"),
        ("GET", f"/api/kb/jobs/{'0' * 32}"),
    ]:
        resp = await api.request(method, path, headers=headers)
        assert resp.status == 401, (method, path)
        assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_upload_list_search_delete(api) -> None:
    job = await _upload_and_wait(api, "shop", ("使用说明.md", MANUAL.encode()), ("faq.csv", FAQ))
    assert (job["status"], job["kb"], job["total"], job["done"]) == ("done", "shop", 2, 2)
    assert [(r["source"], r["outcome"], r["chunks"]) for r in job["results"]] == [
        ("使用说明.md", "added", job["results"][0]["chunks"]),
        ("faq.csv", "added", 2),
    ]
    assert job["results"][0]["chunks"] >= 1
    listed = await (await api.get("/api/kb/shop/documents", headers=AUTH)).json()
    assert [(d["source"], d["status"], d["error"]) for d in listed["documents"]] == [
        ("faq.csv", "indexed", ""),
        ("使用说明.md", "indexed", ""),
    ]

    params = {"q": "滤网什么时候换", "k": "3"}
    resp = await api.get("/api/kb/shop/search", params=params, headers=AUTH)
    hits = (await resp.json())["hits"]
    assert hits[0]["source"] == "faq.csv"
    assert hits[0]["section"] == "FAQ"
    assert hits[0]["answer"].startswith("建议每 6 个月更换一次滤网")
    assert hits[0]["score"] == 1.0
    assert any(h["source"] == "使用说明.md" and h["section"] == "滤网更换" for h in hits)

    # The same bytes again: nothing changes.
    again = await _upload_and_wait(api, "shop", ("faq.csv", FAQ))
    assert [r["outcome"] for r in again["results"]] == ["unchanged"]

    resp = await api.delete("/api/kb/shop/documents/faq.csv", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["deleted"]["source"] == "faq.csv"
    listed = await (await api.get("/api/kb/shop/documents", headers=AUTH)).json()
    assert [d["source"] for d in listed["documents"]] == ["使用说明.md"]
    resp = await api.get("/api/kb/shop/search", params={"q": "滤网什么时候换"}, headers=AUTH)
    assert all(h["source"] != "faq.csv" for h in (await resp.json())["hits"])
    assert (await api.delete("/api/kb/shop/documents/faq.csv", headers=AUTH)).status == 404
    # By id too.
    doc_id = listed["documents"][0]["id"]
    assert (await api.delete(f"/api/kb/shop/documents/{doc_id}", headers=AUTH)).status == 200
    listed = await (await api.get("/api/kb/shop/documents", headers=AUTH)).json()
    assert listed["documents"] == []


async def test_a_corrupt_file_fails_alone(api) -> None:
    job = await _upload_and_wait(
        api,
        "shop2",
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf"),
        ("../../etc/faq.csv", FAQ),
        ("notes.exe", b"MZ"),
    )
    assert job["status"] == "done"
    by_source = {r["source"]: r for r in job["results"]}
    assert set(by_source) == {"broken.pdf", "faq.csv", "notes.exe"}  # no directory parts
    assert by_source["faq.csv"]["outcome"] == "added"
    for bad in ("broken.pdf", "notes.exe"):
        assert by_source[bad]["outcome"] == "failed"
        assert by_source[bad]["error"]
    listed = await (await api.get("/api/kb/shop2/documents", headers=AUTH)).json()
    status = {d["source"]: (d["status"], bool(d["error"])) for d in listed["documents"]}
    assert status == {
        "broken.pdf": ("failed", True),
        "faq.csv": ("indexed", False),
        "notes.exe": ("failed", True),
    }


async def test_an_oversized_upload_is_413(api, make_settings) -> None:
    big = ("big.md", b"x" * (65 * 1024))
    # Declared length over the limit: refused before reading.
    resp = await api.post("/api/kb/shop3/documents", data=_form(big), headers=AUTH)
    assert resp.status == 413
    # Streamed without a length: refused while reading, nothing kept.
    boundary = "b" + secrets.token_hex(8)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.md"\r\n'
        "Content-Type: text/markdown\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(65):
            yield b"x" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    resp = await api.post(
        "/api/kb/shop3/documents",
        data=body(),
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status == 413
    uploads = make_settings().core.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    listed = await (await api.get("/api/kb/shop3/documents", headers=AUTH)).json()
    assert listed["documents"] == []


async def test_bad_requests(api) -> None:
    resp = await api.post("/api/kb/shop/documents", data=b"{}", headers=AUTH)
    assert resp.status == 415
    resp = await api.post("/api/kb/shop/documents", data=aiohttp.FormData({"a": "b"}), headers=AUTH)
    assert resp.status in (400, 415)
    assert (await api.get("/api/kb/shop/search", headers=AUTH)).status == 400
    assert (await api.get(f"/api/kb/jobs/{'f' * 32}", headers=AUTH)).status == 404
    assert (await api.get("/api/kb/bad name!/documents", headers=AUTH)).status == 400
