"""PostgreSQL with pgvector: vectors in a `vector(dim)` column with an HNSW (cosine) index,
searched by the database, ranking exactly like SQLite's in-memory search on the same data.

The system PostgreSQL has no pgvector, so this module starts its own PostgreSQL 16 with
pgvector from the `pgserver` package (a dev dependency) in a temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, text
from sqlmodel import Session, select

from bot.db.engine import get_engine
from knowledge import pgvector, reindex, store
from knowledge.embedding import HTTPEmbedder
from knowledge.models import ChunkVector
from knowledge.search.hybrid import HybridRetriever
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.integration.conftest import SAMPLE_KB

QUERIES = ["我想退货怎么办", "发票怎么开", "多久发货", "运费怎么算", "扫地机器人保修多久", "保修"]
DIM = 48


@pytest.fixture(scope="module")
def pgvector_url() -> Iterator[str]:
    """A database on a private PostgreSQL 16 + pgvector (pgserver), for this module."""
    with warnings.catch_warnings():
        # pgserver's import looks up a runtime dir; XDG_RUNTIME_DIR is unset in CI.
        warnings.simplefilter("ignore")
        import pgserver

    folder = Path(tempfile.mkdtemp(prefix="pgv"))  # short: the socket path has a size limit
    server = pgserver.get_server(folder, cleanup_mode="stop")
    name = f"kb_{uuid.uuid4().hex[:10]}"
    server.psql(f'CREATE DATABASE "{name}";')
    url = f"postgresql://postgres:@/{name}?host={folder}"
    try:
        yield url
    finally:
        get_engine(url).dispose()  # close pooled connections before the server stops
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def embedder() -> Iterator[HTTPEmbedder]:
    state = EmbeddingFakeState(dim=DIM)
    with serve(embedding_app(state)) as url:
        client = HTTPEmbedder(f"{url}/v1", state.model, dim=DIM, batch_size=16)
        with client:
            yield client


def _ranking(retriever: HybridRetriever) -> list[list[tuple[str, str, float]]]:
    return [
        [(h.source, h.text, round(h.score, 4)) for h in retriever.search(q, 6)] for q in QUERIES
    ]


def test_vectors_go_to_an_hnsw_column_and_rank_like_sqlite(
    pgvector_url: str, tmp_path: Path, embedder: HTTPEmbedder
) -> None:
    engine = get_engine(pgvector_url)
    assert pgvector.available(engine)
    kb = f"kb-{uuid.uuid4().hex[:8]}"
    with Session(engine) as pg:
        store.ingest_folder(pg, kb, SAMPLE_KB, embedder=embedder)
        blobs = pg.exec(select(func.count()).select_from(ChunkVector)).one()
        count = f"SELECT count(*) FROM {pgvector.table(DIM)}"  # noqa: S608
        rows = pg.execute(text(count)).scalar_one()
        assert rows == blobs > 0
        kind = pg.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = CAST(:t AS regclass) AND attname = 'embedding'"
            ),
            {"t": pgvector.table(DIM)},
        ).scalar_one()
        assert kind == f"vector({DIM})"
        index = pg.execute(
            text("SELECT indexdef FROM pg_indexes WHERE tablename = :t AND indexname LIKE '%hnsw'"),
            {"t": pgvector.table(DIM)},
        ).scalar_one()
        assert "hnsw" in index
        assert "vector_cosine_ops" in index
        on_pg = HybridRetriever.from_store(pg, [kb], embedder)
        assert isinstance(on_pg.dense, pgvector.PgVectorSearch)
        pg_ranking = _ranking(on_pg)
    with Session(get_engine(f"sqlite:///{tmp_path}/bot.db")) as lite:
        store.ingest_folder(lite, kb, SAMPLE_KB, embedder=embedder)
        on_sqlite = HybridRetriever.from_store(lite, [kb], embedder)
        assert not isinstance(on_sqlite.dense, pgvector.PgVectorSearch)
        assert _ranking(on_sqlite) == pg_ranking
    assert all(ranked for ranked in pg_ranking)


def test_delete_and_reindex_keep_the_index_in_step(
    pgvector_url: str, embedder: HTTPEmbedder
) -> None:
    engine = get_engine(pgvector_url)
    kb = f"kb-{uuid.uuid4().hex[:8]}"
    table = pgvector.table(DIM)

    def index_rows(session: Session) -> int:
        query = text(
            f"SELECT count(*) FROM {table} v JOIN knowledgebase k ON k.id = v.kb_id "  # noqa: S608
            "WHERE k.name = :kb"
        )
        return int(session.execute(query, {"kb": kb}).scalar_one())

    with Session(engine) as pg:
        store.ingest_folder(pg, kb, SAMPLE_KB, embedder=embedder)
        before = index_rows(pg)
        assert before > 0
        done = reindex.reindex(pg, kb, embedder)
        assert done.vectors == before
        assert index_rows(pg) == before  # replaced, not doubled
        faq_rows = sum(len(e.questions) for e in store.load_chunks(pg, [kb]).faqs)
        store.remove(pg, kb, "faq.csv")
        assert index_rows(pg) == before - faq_rows
        retriever = HybridRetriever.from_store(pg, [kb], embedder)
        assert all(h.source != "faq.csv" for q in QUERIES for h in retriever.search(q, 5))
