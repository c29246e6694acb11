"""A bulk load on PostgreSQL: the search indexes dropped during the job and built after it,
searches right meanwhile, a later document found through the index at once, and an index
a killed job left missing built again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from bot.db.engine import get_engine
from knowledge import ingest_job, lexical, pgvector, store
from knowledge.embedding import HTTPEmbedder
from knowledge.search.hybrid import HybridRetriever, build
from tests.integration.knowledge.test_kb_pgvector import DIM, embedder, pgvector_url

__all__ = ["embedder", "pgvector_url"]  # the fixtures, shared with test_kb_pgvector


def _indexes(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE indexname = ANY(:names)"),
            {"names": [lexical.GIN_INDEX, pgvector.index_name(DIM)]},
        )
        return {str(r[0]) for r in rows}


def _top_source(url: str, kb: str, embedder: HTTPEmbedder, query: str) -> str:
    with Session(get_engine(url)) as session:
        retriever = build(session, [kb], embedder)
        assert isinstance(retriever, HybridRetriever)
        hits = retriever.search(query, 3)
    return hits[0].source if hits else ""


def _folder(root: Path, files: int) -> list[tuple[Path, str]]:
    root.mkdir()
    for n in range(files):
        (root / f"m{n:03d}.md").write_text(
            f"## 型号{n}\n\n第{n}号机型的电池容量是{n * 100 + 7}毫安时。\n\n"
            f"## 保修{n}\n\n第{n}号机型整机保修{n % 5 + 1}年。\n",
            "utf-8",
        )
    return store.folder_files(root)


def test_bulk_load_builds_the_indexes_after_and_searches_stay_right(
    pgvector_url: str, tmp_path: Path, embedder: HTTPEmbedder
) -> None:
    engine = get_engine(pgvector_url)
    assert pgvector.available(engine)
    kb = f"bulk-{uuid.uuid4().hex[:8]}"
    files = _folder(tmp_path / "kb", 120)  # three batches of 50 files
    during: list[tuple[set[str], str]] = []

    def on_result(result: store.IngestResult) -> None:
        if result.source == "m060.md":  # the second batch is written, the third to come
            found = _top_source(pgvector_url, kb, embedder, "第3号机型的电池容量")
            during.append((_indexes(pgvector_url), found))

    results = ingest_job.run(
        engine, kb, files, embedder=embedder, workers=2, on_result=on_result, bulk=True
    )
    assert store.outcomes(results) == {"added": 120, "unchanged": 0, "replaced": 0, "failed": 0}
    # Meanwhile: no search index, and the search (scanning) still right.
    assert during == [(set(), "m003.md")]
    # After: both indexes are back, and the planner uses them.
    assert _indexes(pgvector_url) == {lexical.GIN_INDEX, pgvector.index_name(DIM)}
    with engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        vector = "[" + ",".join(["0.1"] * DIM) + "]"
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                text(
                    f"EXPLAIN SELECT chunk_id FROM {pgvector.table(DIM)} "  # noqa: S608
                    "ORDER BY embedding <=> CAST(:q AS vector) LIMIT 5"
                ),
                {"q": vector},
            )
        )
        assert pgvector.index_name(DIM) in plan, plan
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                f"SELECT (SELECT count(*) FROM {pgvector.table(DIM)}),"  # noqa: S608
                f" (SELECT count(*) FROM {lexical.LEX}), (SELECT count(*) FROM knowledgechunk)"
            )
        ).one()
    assert tuple(counts) == (240, 240, 240)

    # A document added later goes through the indexes and is found at once.
    later = tmp_path / "later.md"
    later.write_text("## 新品\n\n蓝鲸牌空气炸锅的保修期是三年。\n", "utf-8")
    start = time.monotonic()
    with Session(engine) as session:
        store.ingest(session, kb, later, embedder=embedder)
    assert _top_source(pgvector_url, kb, embedder, "蓝鲸牌空气炸锅保修") == "later.md"
    assert time.monotonic() - start < 2.0  # well under a second on an idle machine


def test_indexes_a_killed_bulk_load_left_missing_are_built_again(
    pgvector_url: str, tmp_path: Path, embedder: HTTPEmbedder
) -> None:
    engine = get_engine(pgvector_url)
    kb = f"heal-{uuid.uuid4().hex[:8]}"
    files = _folder(tmp_path / "kb", 3)
    ingest_job.run(engine, kb, files[:1], embedder=embedder)
    # What a job killed mid-way leaves: both indexes dropped, never built again.
    assert lexical.defer_index(engine)
    assert pgvector.defer_index(engine, DIM)
    pgvector._deferred.clear()  # another process: it knows of no load in progress
    assert _indexes(pgvector_url) == set()
    # The next write of vectors builds the HNSW index; the next job the keyword one too.
    with Session(engine) as session:
        store.ingest(session, kb, files[1][0], source=files[1][1], embedder=embedder)
    assert _indexes(pgvector_url) == {pgvector.index_name(DIM)}
    ingest_job.run(engine, kb, files, embedder=embedder)
    assert _indexes(pgvector_url) == {lexical.GIN_INDEX, pgvector.index_name(DIM)}
