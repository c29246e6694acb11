"""Dense retrieval end to end: vectors stored at ingestion (SQLite and PostgreSQL), hybrid
search through the fake embedding server on loopback, fallbacks, reindex and deletion."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from bot import wiring
from bot.db.engine import get_engine
from bot.settings import Settings
from knowledge import reindex, store, vectors
from knowledge.base import Hit
from knowledge.embedding import HTTPEmbedder
from knowledge.models import ChunkVector, Document, KnowledgeBase, KnowledgeChunk
from knowledge.search import hybrid
from knowledge.search.dense import DenseIndex
from knowledge.search.hybrid import DENSE_FALLBACKS, HybridRetriever
from knowledge.search.rerank import RerankingRetriever
from knowledge.search.retrieval import KeywordRetriever
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app, relevance
from tests.integration.conftest import SAMPLE_KB

QUERIES = ["我想退货怎么办", "发票怎么开", "多久发货", "运费怎么算", "扫地机器人保修多久"]
DIM = 48


@pytest.fixture
def fake() -> Iterator[tuple[EmbeddingFakeState, str]]:
    state = EmbeddingFakeState(dim=DIM, api_key="sk-emb")
    with serve(embedding_app(state)) as url:
        yield state, url


@pytest.fixture
def embedder(fake: tuple[EmbeddingFakeState, str]) -> Iterator[HTTPEmbedder]:
    _, url = fake
    with HTTPEmbedder(
        f"{url}/v1", "fake-bge-m3", "sk-emb", dim=DIM, batch_size=8, backoff_s=0.01
    ) as client:
        yield client


def _url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/bot.db" if kind == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    with Session(get_engine(_url(request.param, request, tmp_path))) as s:
        yield s


def _kb() -> str:
    return f"kb-{uuid.uuid4().hex[:12]}"


def _vector_count(session: Session, kb: str) -> int:
    query = (
        select(func.count())
        .select_from(ChunkVector)
        .join(KnowledgeChunk, col(KnowledgeChunk.id) == ChunkVector.chunk_id)
        .join(Document, col(Document.id) == KnowledgeChunk.document_id)
        .where(col(Document.kb_id).in_(select(KnowledgeBase.id).where(KnowledgeBase.name == kb)))
    )
    return int(session.exec(query).one())


def test_ingestion_stores_one_vector_per_passage_and_faq_question(
    session: Session, embedder: HTTPEmbedder, fake: tuple[EmbeddingFakeState, str]
) -> None:
    state, _ = fake
    kb = _kb()
    progress: list[tuple[int, int]] = []
    result = store.ingest(
        session,
        kb,
        SAMPLE_KB / "faq.csv",
        embedder=embedder,
        on_embed=lambda d, t: progress.append((d, t)),
    )
    assert result.outcome == store.ADDED
    assert result.document is not None
    assert result.document.error == ""
    loaded = store.load_chunks(session, [kb])
    questions = sum(len(e.questions) for e in loaded.faqs)
    assert questions > len(loaded.faqs)  # the sample has similar questions
    assert _vector_count(session, kb) == questions == state.texts
    assert progress[-1] == (questions, questions)
    stored = vectors.load(session, [kb], "fake-bge-m3")
    assert stored.dim == DIM
    assert len(stored.by_key) == questions
    assert vectors.load(session, [kb], "another-model").by_key == {}


def test_stored_vectors_are_read_back_into_one_matrix_row_for_row(
    session: Session, embedder: HTTPEmbedder
) -> None:
    kb = _kb()
    store.ingest(session, kb, SAMPLE_KB / "faq.csv", embedder=embedder)
    stored = vectors.load(session, [kb], "fake-bge-m3")
    assert stored.matrix.dtype == np.float32
    assert stored.matrix.shape == (len(stored.rows), DIM)
    blobs = {
        (chunk_id, variant): blob
        for chunk_id, variant, blob in session.exec(
            select(ChunkVector.chunk_id, ChunkVector.variant, ChunkVector.vector)
        )
    }
    keys = sorted(stored.rows, reverse=True)  # any order: select follows the keys given
    picked = stored.select(keys)
    for row, key in zip(picked, keys, strict=True):
        assert row.tobytes() == blobs[key]  # bit for bit what was stored
    assert stored.select([]).shape == (0, DIM)


def test_hybrid_search_ranks_and_scores_as_confidence(
    session: Session, embedder: HTTPEmbedder
) -> None:
    kb = _kb()
    store.ingest_folder(session, kb, SAMPLE_KB, embedder=embedder)
    retriever = HybridRetriever.from_store(session, [kb], embedder)
    assert isinstance(retriever.dense, DenseIndex)  # no pgvector on this PostgreSQL
    assert retriever.dense.covered == len(retriever.keyword)  # every entry has a vector
    faq = store.load_chunks(session, [kb]).faqs[0]
    hits = retriever.search(faq.question, k=5)
    # A question asked word for word: lexically identical and at cosine 1, so it would
    # still be a direct FAQ answer.
    assert hits[0].answer == faq.answer
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    for query in QUERIES:
        found = retriever.search(query, k=5)
        assert found, query
        assert all(0.0 <= h.score <= 1.0 for h in found)
        assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    rrf = HybridRetriever.from_store(session, [kb], embedder, fusion="rrf")
    assert rrf.search(faq.question, k=1)[0].answer == faq.answer


def test_same_ranking_on_sqlite_and_postgresql(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: HTTPEmbedder
) -> None:
    rankings = []
    for kind in ("sqlite", "postgresql"):
        with Session(get_engine(_url(kind, request, tmp_path))) as s:
            kb = _kb()
            store.ingest_folder(s, kb, SAMPLE_KB, embedder=embedder)
            retriever = HybridRetriever.from_store(s, [kb], embedder)
            rankings.append(
                [
                    [(h.source, h.text, round(h.score, 5)) for h in retriever.search(q, 5)]
                    for q in QUERIES
                ]
            )
    assert rankings[0] == rankings[1]


def test_embedding_outage_at_ingestion_keeps_keywords_then_reindex_embeds(
    session: Session, embedder: HTTPEmbedder, fake: tuple[EmbeddingFakeState, str]
) -> None:
    state, _ = fake
    kb = _kb()
    state.fail_next(10, status=503)
    result = store.ingest(session, kb, SAMPLE_KB / "policies.md", embedder=embedder)
    assert result.outcome == store.ADDED
    assert result.document is not None
    assert "向量化失败" in result.document.error
    assert "503" in result.document.error
    assert _vector_count(session, kb) == 0
    assert KeywordRetriever.from_store(session, [kb]).search("发票怎么开", 1)  # still searchable
    before = store.version(session, kb)
    state.failures.clear()
    done = reindex.reindex(session, kb, embedder)
    assert (done.documents, done.failed) == (1, 0)
    assert (
        _vector_count(session, kb) == done.vectors == len(store.load_chunks(session, [kb]).chunks)
    )
    assert store.version(session, kb) != before  # workers will reload


def _rounded(hits: list[Hit]) -> list[Hit]:
    return [dataclasses.replace(h, score=round(h.score, 9)) for h in hits]


def test_query_embedding_failure_falls_back_to_keywords(
    session: Session, embedder: HTTPEmbedder, fake: tuple[EmbeddingFakeState, str]
) -> None:
    state, _ = fake
    kb = _kb()
    store.ingest_folder(session, kb, SAMPLE_KB, embedder=embedder)
    retriever = HybridRetriever.from_store(session, [kb], embedder)
    keyword = KeywordRetriever.from_store(session, [kb])
    counter = DENSE_FALLBACKS.labels(reason="embedding")
    before = counter._value.get()
    embedder.query_timeout_s = 0.2
    state.fail_next(status=200, delay_s=1.0)
    # On PostgreSQL the keyword scores are summed in another order: equal to 1e-9.
    assert _rounded(retriever.search("发票怎么开", 3)) == _rounded(keyword.search("发票怎么开", 3))
    state.fail_next(status=500)
    assert retriever.search("运费怎么算", 3) == keyword.search("运费怎么算", 3)
    assert counter._value.get() == before + 2


def test_rm_deletes_the_vectors_too(session: Session, embedder: HTTPEmbedder) -> None:
    kb = _kb()
    store.ingest_folder(session, kb, SAMPLE_KB, embedder=embedder)
    assert _vector_count(session, kb) > 0
    for doc in store.list_documents(session, kb):
        assert store.remove(session, kb, doc.source) is not None
    assert _vector_count(session, kb) == 0


def test_worker_retriever_is_hybrid_when_embeddings_are_configured(
    tmp_path: Path, fake: tuple[EmbeddingFakeState, str], knowledge_of
) -> None:
    _, url = fake
    kb_a, kb_b = _kb(), _kb()
    settings = Settings.load(
        None,
        core={"data_dir": tmp_path / "data", "kb_names": f"{kb_a}, {kb_b}"},
        embedding={
            "base_url": f"{url}/v1",
            "model": "fake-bge-m3",
            "api_key": "sk-emb",
            "dim": DIM,
        },
    )
    emb = wiring.embedder(settings)
    assert emb is not None
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    with Session(get_engine(settings.core.effective_database_url())) as s:
        store.ingest(s, kb_a, folder / "faq.csv", embedder=emb)
        store.ingest(s, kb_b, folder / "policies.md", embedder=emb)
    emb.close()
    index = knowledge_of(settings)
    retriever = index.current()
    assert isinstance(retriever, HybridRetriever)
    sources = {h.source for q in QUERIES for h in retriever.search(q, 5)}
    assert sources == {"faq.csv", "policies.md"}  # both configured bases are searched
    with Session(get_engine(settings.core.effective_database_url())) as s:
        store.remove(s, kb_b, "policies.md")
        assert isinstance(hybrid.build(s, [kb_a], None), KeywordRetriever)
    updated = index.current()
    assert updated is not None
    assert updated is not retriever
    assert {h.source for q in QUERIES for h in updated.search(q, 5)} == {"faq.csv"}


def test_worker_retriever_reranks_when_a_reranker_is_configured(
    tmp_path: Path, fake: tuple[EmbeddingFakeState, str], knowledge_of
) -> None:
    state, url = fake
    kb = _kb()
    settings = Settings.load(
        None,
        core={"data_dir": tmp_path / "data", "kb_names": kb},
        embedding={"base_url": f"{url}/v1", "model": "fake-bge-m3", "api_key": "sk-emb"},
        rerank={"base_url": f"{url}/v1", "model": "fake-rerank", "candidates": 4},
    )
    emb = wiring.embedder(settings)
    with Session(get_engine(settings.core.effective_database_url())) as s:
        store.ingest_folder(s, kb, SAMPLE_KB, embedder=emb)
    assert emb is not None
    emb.close()
    retriever = knowledge_of(settings).current()
    assert isinstance(retriever, RerankingRetriever)
    hits = retriever.search("发票怎么开", 3)
    assert len(hits) == 3
    sent = state.matching("/v1/rerank")[-1].json
    assert sent["query"] == "发票怎么开"
    assert len(sent["documents"]) == 4
    # the fake ranks by shared bigrams: the first hit is the most relevant document
    top_doc = max(sent["documents"], key=lambda d: relevance("发票怎么开", d))
    assert hits[0].text in top_doc


def test_jieba_user_dictionary_setting_is_loaded(tmp_path: Path, knowledge_of) -> None:
    from knowledge.text.tokenize import tokenize, user_dicts

    term = "青禾霁蓝净化宝"  # an invented product name: jieba splits it by default
    assert term not in tokenize(term)
    dictionary = tmp_path / "terms.txt"
    dictionary.write_text(f"{term} 100 nz\n", encoding="utf-8")
    settings = Settings.load(
        None, core={"data_dir": tmp_path / "data", "jieba_user_dict": str(dictionary)}
    )
    knowledge_of(settings)
    assert dictionary.resolve() in user_dicts()
    assert term in tokenize(f"请问{term}怎么用")
    knowledge_of(settings)
    assert user_dicts().count(dictionary.resolve()) == 1  # loaded once
