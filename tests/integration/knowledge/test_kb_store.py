"""Knowledge bases in the database, on SQLite and PostgreSQL: ingest, replace, remove, search."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from bot.db.engine import get_engine
from bot.settings import Settings
from knowledge import store
from knowledge.models import FAILED, INDEXED, KnowledgeChunk
from knowledge.search.retrieval import KeywordRetriever
from tests.integration.conftest import SAMPLE_KB

QUERIES = ["我想退货怎么办", "发票怎么开", "多久发货", "运费怎么算", "扫地机器人保修多久"]


@pytest.fixture(params=["sqlite", "postgresql"])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/bot.db"
    else:
        url = request.getfixturevalue("pg_url")
    with Session(get_engine(url)) as s:
        yield s


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The sample knowledge base plus one corrupt PDF, in a folder of its own."""
    root = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, root)
    (root / "manuals").mkdir()
    (root / "manuals" / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    return root


def _kb_name() -> str:
    # PostgreSQL keeps one database for the run: each test uses a base of its own.
    return f"kb-{uuid.uuid4().hex[:12]}"


def _chunks_of(session: Session, document_id: int | None) -> list[KnowledgeChunk]:
    query = select(KnowledgeChunk).where(col(KnowledgeChunk.document_id) == document_id)
    return list(session.exec(query))


def test_folder_is_ingested_and_the_corrupt_file_recorded(session: Session, folder: Path) -> None:
    kb = _kb_name()
    results = store.ingest_folder(session, kb, folder)
    assert store.outcomes(results) == {"added": 3, "unchanged": 0, "replaced": 0, "failed": 1}
    by_source = {r.source: r for r in results}
    assert set(by_source) == {"faq.csv", "manuals/broken.pdf", "policies.md", "product_manual.md"}
    failed = by_source["manuals/broken.pdf"]
    assert failed.document is not None
    assert failed.document.status == FAILED
    assert "PDF" in failed.error
    assert failed.document.error == failed.error

    docs = {d.source: d for d in store.list_documents(session, kb)}
    assert docs["manuals/broken.pdf"].chunk_count == 0
    assert _chunks_of(session, docs["manuals/broken.pdf"].id) == []
    for source in ("faq.csv", "policies.md", "product_manual.md"):
        assert docs[source].status == INDEXED
        assert docs[source].chunk_count == len(_chunks_of(session, docs[source].id)) > 0
    loaded = store.load_chunks(session, [kb])
    assert len(loaded.faqs) == docs["faq.csv"].chunk_count


def test_same_bytes_again_change_nothing(session: Session, folder: Path) -> None:
    kb = _kb_name()
    store.ingest_folder(session, kb, folder)
    before = store.version(session, kb)
    again = store.ingest_folder(session, kb, folder)
    assert store.outcomes(again)["unchanged"] == 3
    assert store.outcomes(again)["failed"] == 1  # a failed file is tried again
    assert store.version(session, kb) == before
    # The same bytes under another name are the same document.
    copy = folder / "copy.md"
    shutil.copy(folder / "policies.md", copy)
    result = store.ingest(session, kb, copy)
    assert result.outcome == store.UNCHANGED
    assert result.document is not None
    assert result.document.source == "policies.md"


def test_a_changed_file_replaces_its_chunks(session: Session, folder: Path) -> None:
    kb = _kb_name()
    store.ingest_folder(session, kb, folder)
    doc = next(d for d in store.list_documents(session, kb) if d.source == "policies.md")
    old_ids = {c.id for c in _chunks_of(session, doc.id)}
    v1 = store.version(session, kb)

    new_text = "# 新政策\n\n退货一律联系人工客服办理。\n"
    (folder / "policies.md").write_text(new_text, encoding="utf-8")
    result = store.ingest(session, kb, folder / "policies.md", source="policies.md")
    assert result.outcome == store.REPLACED
    assert result.document is not None
    assert result.document.id == doc.id
    assert result.chunks == 1
    chunks = _chunks_of(session, doc.id)
    assert [c.text for c in chunks] == ["退货一律联系人工客服办理。"]
    assert chunks[0].section == "新政策"
    assert not old_ids & {c.id for c in chunks}
    assert store.version(session, kb) != v1


def test_a_broken_upload_of_an_indexed_source_keeps_the_old_chunks(
    session: Session, folder: Path
) -> None:
    kb = _kb_name()
    good = store.ingest(session, kb, folder / "policies.md")
    assert good.outcome == store.ADDED
    v1 = store.version(session, kb)
    broken = folder / "broken" / "policies.md"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xfe\x00\x00" * 4 + b"\x00binary")
    bad = store.ingest(session, kb, broken)
    assert bad.outcome == store.FAILED_OUTCOME
    assert bad.error
    assert store.version(session, kb) == v1
    (doc,) = store.list_documents(session, kb)
    assert (doc.status, doc.error, doc.chunk_count) == (INDEXED, bad.error, good.chunks)
    assert len(_chunks_of(session, doc.id)) == good.chunks


def test_rm_deletes_every_chunk(session: Session, folder: Path) -> None:
    kb = _kb_name()
    store.ingest_folder(session, kb, folder)
    docs = {d.source: d for d in store.list_documents(session, kb)}
    faq_id, manual_id = docs["faq.csv"].id, docs["product_manual.md"].id
    v1 = store.version(session, kb)

    removed = store.remove(session, kb, "faq.csv")
    assert removed is not None
    assert _chunks_of(session, faq_id) == []
    v2 = store.version(session, kb)
    assert v2 != v1
    removed = store.remove(session, kb, str(manual_id))  # by id
    assert removed is not None
    assert removed.source == "product_manual.md"
    assert _chunks_of(session, manual_id) == []
    assert store.version(session, kb) != v2
    assert store.remove(session, kb, "faq.csv") is None
    assert store.remove(session, "no-such-kb", "faq.csv") is None
    assert {d.source for d in store.list_documents(session, kb)} == {
        "manuals/broken.pdf",
        "policies.md",
    }
    assert store.load_chunks(session, [kb]).faqs == ()


def test_from_store_ranks_like_from_folder(session: Session) -> None:
    kb = _kb_name()
    store.ingest_folder(session, kb, SAMPLE_KB)
    from_db = KeywordRetriever.from_store(session, [kb])
    from_folder = KeywordRetriever.from_folder(SAMPLE_KB)
    assert from_db.chunks == from_folder.chunks
    assert from_db.faqs == from_folder.faqs
    for query in QUERIES:
        assert from_db.search(query, k=5) == from_folder.search(query, k=5), query


def test_version_is_empty_for_a_missing_base(session: Session) -> None:
    assert store.version(session, "never-made") == ""
    assert store.list_documents(session, "never-made") == []


def test_the_worker_retriever_follows_the_database(tmp_path: Path, knowledge_of) -> None:
    url = f"sqlite:///{tmp_path}/bot.db"
    settings = Settings.load(None, core={"database_url": url, "knowledge_dir": SAMPLE_KB})
    index = knowledge_of(settings)
    # No knowledge base in the database: the folder, as before.
    first = index.current()
    assert first is not None
    assert first.search("怎么退货", k=1)[0].source == "faq.csv"

    other = tmp_path / "other.md"
    other.write_text("# 会员\n\n会员积分每年年底清零。\n", encoding="utf-8")
    with Session(get_engine(url)) as s:
        store.ingest(s, store.DEFAULT_KB, other)
    from_db = index.current()
    assert from_db is not None
    assert from_db is not first
    assert [h.source for h in from_db.search("积分清零", k=5)] == ["other.md"]
    assert index.current() is from_db  # unchanged: not rebuilt

    with Session(get_engine(url)) as s:
        store.ingest(s, store.DEFAULT_KB, SAMPLE_KB / "faq.csv")
    updated = index.current()
    assert updated is not None
    assert updated.search("怎么退货", k=1)[0].source == "faq.csv"
    # Within max_age_s the current index is used without asking the database.
    with Session(get_engine(url)) as s:
        store.remove(s, store.DEFAULT_KB, "faq.csv")
    patient = knowledge_of(settings, max_age_s=3600)
    assert patient.current() is not None
    with Session(get_engine(url)) as s:
        store.ingest(s, store.DEFAULT_KB, SAMPLE_KB / "faq.csv")
    assert patient.current().search("怎么退货", k=1) == []  # not checked again yet
    with Session(get_engine(url)) as s:
        store.remove(s, store.DEFAULT_KB, "faq.csv")
    emptied = index.current()
    assert emptied is not None
    assert emptied.search("怎么退货", k=1) == []


def test_two_processes_adding_the_same_file_make_one_document(
    session: Session, folder: Path
) -> None:
    kb = _kb_name()
    engine = session.get_bind()

    def add() -> str:
        with Session(engine) as own:
            return store.ingest(own, kb, folder / "product_manual.md").outcome

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(lambda _: add(), range(4)))
    assert outcomes == ["added", "unchanged", "unchanged", "unchanged"]
    (doc,) = store.list_documents(session, kb)
    assert len(_chunks_of(session, doc.id)) == doc.chunk_count
