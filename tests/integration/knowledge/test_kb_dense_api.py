"""Dense retrieval through the admin API: the Celery ingestion task embeds (with progress)
through the fake embedding server, search is hybrid, and `POST /api/kb/{kb}/reindex`
embeds what an outage left without vectors. Real web app, Celery worker and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from bot.db.engine import get_engine
from knowledge import store
from knowledge.models import ChunkVector
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.integration.web.test_admin_api import FAQ, MANUAL, _form

TOKEN = "admin-" + secrets.token_hex(8)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def fake() -> Iterator[tuple[EmbeddingFakeState, str]]:
    state = EmbeddingFakeState(dim=32)
    with serve(embedding_app(state)) as url:
        yield state, url


@pytest.fixture
async def api(make_settings, make_client, celery_worker, fake) -> Any:
    _, url = fake
    settings = make_settings(
        core={"admin_token": TOKEN},
        embedding={"base_url": f"{url}/v1", "model": "fake-bge-m3", "dim": 32, "batch_size": 4},
    )
    client = await make_client(settings)
    celery_worker(settings)
    client.settings = settings
    return client


async def _wait(api, resp) -> dict[str, Any]:
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    for _ in range(400):
        job = await (await api.get(f"/api/kb/jobs/{job_id}", headers=AUTH)).json()
        if job["status"] in ("done", "failed"):
            return dict(job)
        await asyncio.sleep(0.05)
    raise AssertionError(f"job not finished: {job}")


def _vectors(api) -> int:
    with Session(get_engine(api.settings.core.effective_database_url())) as s:
        return int(s.exec(select(func.count()).select_from(ChunkVector)).one())


async def test_upload_embeds_search_is_hybrid_and_reindex_repairs(api, fake) -> None:
    state, _ = fake
    upload = api.post("/api/kb/shop/documents", data=_form(("faq.csv", FAQ)), headers=AUTH)
    job = await _wait(api, await upload)
    assert job["status"] == "done"
    assert job["results"][0]["outcome"] == "added"
    assert (job["embedded"], job["to_embed"]) == (5, 5)  # 2 entries, 5 questions
    assert _vectors(api) == 5
    assert [len(r.json["input"]) for r in state.matching("/embeddings")] == [4, 1]

    resp = await api.get("/api/kb/shop/search", params={"q": "滤网什么时候换"}, headers=AUTH)
    hits = (await resp.json())["hits"]
    assert hits[0]["answer"].startswith("建议每 6 个月更换一次滤网")
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert state.matching("/embeddings")[-1].json["input"] == ["滤网什么时候换"]  # the query

    # The embedding service is down while a manual is uploaded: keywords only, error shown.
    state.fail_next(4, status=503)
    upload = api.post(
        "/api/kb/shop/documents", data=_form(("使用说明.md", MANUAL.encode())), headers=AUTH
    )
    job = await _wait(api, await upload)
    assert job["results"][0]["outcome"] == "added"
    docs = (await (await api.get("/api/kb/shop/documents", headers=AUTH)).json())["documents"]
    manual = next(d for d in docs if d["source"] == "使用说明.md")
    assert manual["error"].startswith(store.EMBED_FAILED)
    assert _vectors(api) == 5

    job = await _wait(api, await api.post("/api/kb/shop/reindex", headers=AUTH))
    assert (job["status"], job["kind"], job["done"], job["total"]) == ("done", "reindex", 2, 2)
    assert job["results"][0]["documents"] == 2
    assert _vectors(api) == 5 + manual["chunks"]
    docs = (await (await api.get("/api/kb/shop/documents", headers=AUTH)).json())["documents"]
    assert [d["error"] for d in docs] == ["", ""]
    assert (await api.post("/api/kb/shop/reindex")).status == 401
