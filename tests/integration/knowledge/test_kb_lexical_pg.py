"""Keyword search inside PostgreSQL (`knowledge.lexical`, `PgKeywordRetriever`): the same
hits and confidences as the in-memory BM25, kept current document by document."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from bot.db.engine import get_engine
from knowledge import lexical, store
from knowledge.base import Retriever
from knowledge.search import hybrid
from knowledge.search.pg_keyword import PgKeywordRetriever
from knowledge.search.retrieval import KeywordRetriever
from tests.integration.conftest import SAMPLE_KB

QUERIES = [
    "我想退货怎么办",
    "发票怎么开",
    "多久发货",
    "运费怎么算",
    "扫地机器人保修多久",
    "保修",
    "wifi连不上",
    "E1 错误码",
]


@pytest.fixture
def session(fresh_database: Callable[[], str]) -> Iterator[Session]:
    url = fresh_database()
    if not url.startswith("postgresql"):
        pytest.fail("these tests need PostgreSQL (TEST_DATABASE=sqlite does not apply)")
    with Session(get_engine(url)) as s:
        yield s


def _hits(retriever: Retriever, k: int = 8) -> list[list[tuple]]:
    return [
        [
            (h.source, h.section, h.text, h.answer, h.questions, round(h.score, 9))
            for h in retriever.search(q, k)
        ]
        for q in QUERIES
    ]


def _terms(session: Session, kb: str) -> dict[tuple[int, str], tuple[int, int]]:
    rows = session.execute(
        text(
            f"SELECT t.kind, t.term, t.df, t.tokens FROM {lexical.TERMS} t "  # noqa: S608
            "JOIN knowledgebase k ON k.id = t.kb_id WHERE k.name = :kb"
        ),
        {"kb": kb},
    ).all()
    return {(kind, term): (df, tokens) for kind, term, df, tokens in rows}


def _lex_rows(session: Session, kb: str) -> int:
    query = text(
        f"SELECT count(*) FROM {lexical.LEX} l JOIN knowledgebase k ON k.id = l.kb_id "  # noqa: S608
        "WHERE k.name = :kb"
    )
    return int(session.execute(query, {"kb": kb}).scalar_one())


def test_same_hits_and_confidences_as_the_in_memory_index(session: Session) -> None:
    store.ingest_folder(session, "default", SAMPLE_KB)
    on_pg = hybrid.build(session, ["default"])
    assert isinstance(on_pg, PgKeywordRetriever)
    in_memory = KeywordRetriever.from_store(session, ["default"])
    assert len(on_pg) == len(in_memory)
    assert _hits(on_pg) == _hits(in_memory)
    assert all(_hits(on_pg))
    # With a candidate budget of one posting only the rarest term finds candidates:
    # the entry that holds it still comes first, with its exact confidence.
    narrow = PgKeywordRetriever(on_pg._engine, on_pg._kb_ids, candidate_postings=1)
    top = narrow.search("扫地机器人显示错误码E1", 1)[0]
    assert (top.text, top.score) == (
        (best := in_memory.search("扫地机器人显示错误码E1", 1)[0]).text,
        best.score,
    )


def test_add_replace_remove_touch_only_that_document(session: Session, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    kb = f"kb-{uuid.uuid4().hex[:8]}"
    store.ingest(session, kb, folder / "policies.md")
    retriever = hybrid.build(session, [kb])  # built once: every change below shows at once
    assert isinstance(retriever, PgKeywordRetriever)
    assert not any(h.source == "faq.csv" for h in retriever.search("发票怎么开", 5))
    policies_rows = _lex_rows(session, kb)

    store.ingest(session, kb, folder / "faq.csv")
    faq_rows = sum(len(e.questions) for e in store.load_chunks(session, [kb]).faqs)
    assert _lex_rows(session, kb) == policies_rows + faq_rows
    assert retriever.search("发票怎么开", 1)[0].source == "faq.csv"
    assert _hits(retriever) == _hits(KeywordRetriever.from_store(session, [kb]))

    # Replace: the FAQ sheet loses its invoice rows; the old rows are gone, the new in.
    sheet = (folder / "faq.csv").read_text("utf-8").splitlines()
    kept = [line for line in sheet if "发票" not in line]
    assert len(kept) < len(sheet)
    (folder / "faq.csv").write_text("\n".join(kept) + "\n", "utf-8")
    assert store.ingest(session, kb, folder / "faq.csv").outcome == store.REPLACED
    found = retriever.search("增值税专用发票", 10)
    assert not any(h.source == "faq.csv" and "发票" in h.text for h in found)
    assert _hits(retriever) == _hits(KeywordRetriever.from_store(session, [kb]))

    # The frequencies are exactly those of the final documents indexed from scratch.
    fresh = f"kb-{uuid.uuid4().hex[:8]}"
    store.ingest(session, fresh, folder / "policies.md")
    store.ingest(session, fresh, folder / "faq.csv")
    assert _terms(session, kb) == _terms(session, fresh)

    store.remove(session, kb, "faq.csv")
    assert _lex_rows(session, kb) == policies_rows
    assert all(h.source == "policies.md" for q in QUERIES for h in retriever.search(q, 5))
    store.remove(session, kb, "policies.md")
    assert _lex_rows(session, kb) == 0
    assert _terms(session, kb) == {}
    assert retriever.search("发票怎么开", 5) == []
    assert _terms(session, fresh)  # another base is untouched


def test_tokens_with_quotes_and_backslashes_are_indexed_verbatim(
    session: Session, tmp_path: Path
) -> None:
    doc = tmp_path / "odd.md"
    doc.write_text("# it's a\\b\n\n型号 x'y 与 c:\\path 的说明：O'Reilly 手册。\n", "utf-8")
    store.ingest(session, "default", doc)
    retriever = hybrid.build(session, ["default"])
    in_memory = KeywordRetriever.from_store(session, ["default"])
    for query in ("it's", "x'y", "c:\\path", "O'Reilly", "a\\b"):
        found = retriever.search(query, 1)
        assert found, query
        assert found[0].score == pytest.approx(in_memory.search(query, 1)[0].score, abs=1e-12)


def test_chunks_stored_before_the_index_existed_are_indexed_on_first_use(
    session: Session,
) -> None:
    store.ingest_folder(session, "default", SAMPLE_KB)
    # As on a database written before this index: drop its tables.
    session.execute(text(f"DROP TABLE {lexical.LEX}, {lexical.TERMS}"))
    session.commit()
    lexical.forget(session.get_bind())
    retriever = hybrid.build(session, ["default"])
    assert _hits(retriever) == _hits(KeywordRetriever.from_store(session, ["default"]))


def test_a_second_writer_waits_for_the_tables_the_first_is_still_making(
    fresh_database: Callable[[], str],
) -> None:
    """Two uploads at once in one worker process: the first makes the tables in its open
    transaction; the second must not write before it can see them (a console upload of three
    files failed with 'relation knowledge_lex does not exist' in a full run)."""
    import threading

    engine = get_engine(fresh_database())
    lexical.forget(engine)
    first = Session(engine)
    lexical.ensure(first)  # made, not committed yet
    seen: dict[str, object] = {}

    def second() -> None:
        try:
            with Session(engine) as s:
                lexical.ensure(s)
                count = text(f"SELECT count(*) FROM {lexical.LEX}")  # noqa: S608
                seen["rows"] = s.execute(count).scalar_one()
        except Exception as exc:  # what the thread met, for the assertion below
            seen["error"] = exc

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), seen  # waiting for the first writer, not writing blind
    first.commit()
    first.close()
    thread.join(10)
    assert seen == {"rows": 0}


def test_pairs_of_common_terms_skip_a_term_inside_another_and_keep_to_a_budget(
    session: Session,
) -> None:
    """Figures of a 1M-chunk base: 题 lies inside 问题 (the pair narrows nothing), and four
    terms of hundreds of thousands of postings each read 300 ms of index."""
    from knowledge.search.pg_keyword import PAIR_POSTINGS, _Stats
    from knowledge.search.retrieval import CHUNK_BM25

    retriever = PgKeywordRetriever(session.get_bind(), [1])  # type: ignore[arg-type]
    q = lexical.quote
    n, total = 1_000_000, 230_000_000
    df = {"国问": 1642, "己中": 3800, "问题": 2635, "题": 2750, "自己": 27907}
    assert retriever.candidate_query(_Stats(CHUNK_BM25, n, total, df)) == (
        f"({q('国问')} & {q('问题')}) | ({q('国问')} & {q('己中')}) | ({q('问题')} & {q('己中')})"
    )
    df = {"个这": 102_493, "这个": 322_567, "个一": 674_887, "这": 990_525}
    assert PAIR_POSTINGS < 102_493 + 322_567
    assert retriever.candidate_query(_Stats(CHUNK_BM25, n, total, df)) == (
        f"({q('个这')} & {q('这个')})"
    )
    # Still the exact path when the rarest terms fit the candidate budget.
    df = {"蓝鲸": 12, "题": 2750, "问题": 2635}
    assert retriever.candidate_query(_Stats(CHUNK_BM25, n, total, df)) == q("蓝鲸")
