"""The in-memory keyword index (SQLite, the embedded default) follows the store document by
document: adding, replacing or removing one file tokenizes only that file's entries, and the
index scores exactly as one built from scratch. With embeddings, the stored vectors are
read back, never embedded again."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from sqlmodel import Session

from bot.db.engine import get_engine
from knowledge import store
from knowledge.cache import KnowledgeIndex
from knowledge.embedding import HTTPEmbedder
from knowledge.search.dense import DenseIndex
from knowledge.search.hybrid import HybridRetriever
from knowledge.search.retrieval import KeywordRetriever
from knowledge.text.tokenize import tokenize
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.integration.conftest import SAMPLE_KB

QUERIES = ["我想退货怎么办", "发票怎么开", "多久发货", "保修", "wifi连不上", "空气炸锅滤网"]


def _all_hits(retriever: KeywordRetriever) -> list[list[tuple[float, str, str]]]:
    # Every matching entry, so the comparison does not depend on how ties are ordered.
    return [sorted((-h.score, h.source, h.text) for h in retriever.search(q, 500)) for q in QUERIES]


def test_changes_touch_only_their_document(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    engine = get_engine(f"sqlite:///{tmp_path}/bot.db")
    tokenized: list[str] = []

    def counting(text: str) -> list[str]:
        tokenized.append(text)
        return tokenize(text)

    def build(session: Session, names: Sequence[str]) -> KeywordRetriever:
        return KeywordRetriever.from_store(session, names, tokenizer=counting)

    def fresh() -> KeywordRetriever:
        with Session(engine) as s:
            return KeywordRetriever.from_store(s, ["default"])

    with Session(engine) as s:
        store.ingest_folder(s, "default", folder)
    index = KnowledgeIndex(engine, ["default"], build, max_age_s=0.0)
    first = index.current()
    assert isinstance(first, KeywordRetriever)
    assert len(tokenized) > 40  # the first build tokenizes everything

    (folder / "fryer.md").write_text(
        "# 空气炸锅\n\n## 清洁\n\n滤网每周清洗一次。\n\n## 保修\n\n整机保修两年。\n", "utf-8"
    )
    tokenized.clear()
    with Session(engine) as s:
        added = store.ingest(s, "default", folder / "fryer.md")
    after_add = index.current()
    assert isinstance(after_add, KeywordRetriever)
    assert after_add is not first
    assert len(tokenized) == added.chunks  # only the new document's passages
    assert _all_hits(after_add) == _all_hits(fresh())
    assert after_add.search("空气炸锅滤网", 1)[0].source == "fryer.md"

    sheet = (folder / "faq.csv").read_text("utf-8").splitlines()
    (folder / "faq.csv").write_text(
        "\n".join(line for line in sheet if "发票" not in line) + "\n", "utf-8"
    )
    tokenized.clear()
    with Session(engine) as s:
        assert store.ingest(s, "default", folder / "faq.csv").outcome == store.REPLACED
        questions = sum(len(e.questions) for e in store.load_chunks(s, ["default"]).faqs)
    after_replace = index.current()
    assert isinstance(after_replace, KeywordRetriever)
    assert len(tokenized) == questions  # the sheet's questions, nothing else
    assert _all_hits(after_replace) == _all_hits(fresh())

    tokenized.clear()
    with Session(engine) as s:
        store.remove(s, "default", "policies.md")
    after_remove = index.current()
    assert isinstance(after_remove, KeywordRetriever)
    assert tokenized == []
    assert _all_hits(after_remove) == _all_hits(fresh())
    assert all(h.source != "policies.md" for q in QUERIES for h in after_remove.search(q, 10))
    assert first.search("发票怎么开", 1)[0].source == "faq.csv"  # earlier indexes unchanged


def test_hybrid_index_in_memory_embeds_nothing_again(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    engine = get_engine(f"sqlite:///{tmp_path}/bot.db")
    state = EmbeddingFakeState(dim=32)
    tokenized: list[str] = []

    def counting(text: str) -> list[str]:
        tokenized.append(text)
        return tokenize(text)

    with (
        serve(embedding_app(state)) as url,
        HTTPEmbedder(f"{url}/v1", state.model, dim=32, batch_size=16) as embedder,
    ):

        def build(session: Session, names: Sequence[str]) -> HybridRetriever:
            return HybridRetriever.from_store(session, names, embedder, tokenizer=counting)

        with Session(engine) as s:
            store.ingest(s, "default", folder / "faq.csv", embedder=embedder)
        index = KnowledgeIndex(engine, ["default"], build, max_age_s=0.0)
        first = index.current()
        assert isinstance(first, HybridRetriever)
        with Session(engine) as s:
            added = store.ingest(s, "default", folder / "policies.md", embedder=embedder)
        calls = len(state.requests)
        tokenized.clear()
        updated = index.current()
        assert isinstance(updated, HybridRetriever)
        assert updated is not first
        assert len(tokenized) == added.chunks  # only the new document's passages
        assert len(state.requests) == calls  # vectors read back, not embedded again
        assert isinstance(updated.dense, DenseIndex)
        assert updated.dense.covered == len(updated.keyword)
        with Session(engine) as s:
            fresh = HybridRetriever.from_store(s, ["default"], embedder)
        for query in QUERIES:
            got = sorted((-h.score, h.source, h.text) for h in updated.search(query, 500))
            assert got == sorted((-h.score, h.source, h.text) for h in fresh.search(query, 500))
