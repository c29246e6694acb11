"""The keyword index inside PostgreSQL: our own tokens, one `tsvector` per BM25 document.

PostgreSQL's text search parsers know no Chinese, so the tokens are ours
(`knowledge.text.tokenize`: jieba words plus CJK uni/bigrams), made in Python at ingestion
and written as a `tsvector` literal: every token a lexeme, its positions in the token list
(so a lexeme's term frequency is its number of positions). No parser or dictionary of
PostgreSQL touches them, so what the database matches is exactly what the in-process
index would. Two tables, made on first use (PostgreSQL only):

- ``knowledge_lex``: a row per BM25 document, as in the in-process index: a passage
  (heading trail + text, kind 1) or one question of an FAQ entry (kind 0, `variant` its
  number), with its length in tokens; a GIN index on the `tsvector` finds the documents
  holding a term.
- ``knowledge_lexterm``: per knowledge base and kind, each term's document frequency;
  the term ``''`` holds the number of documents and their total length. BM25's idf and
  average length come from here, summed over the bases searched.

Both change only by the rows of the document added, replaced or removed, in the caller's
transaction, under a per-base advisory lock (so concurrent writers to one base cannot
deadlock on the shared frequency rows). Chunks stored before the tables existed are
tokenized once, when the tables are made.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from knowledge.models import FAQ, KnowledgeChunk
from knowledge.text.tokenize import tokenize

log = logging.getLogger(__name__)

LEX = "knowledge_lex"
TERMS = "knowledge_lexterm"
# Kinds, the same numbers as the retrievers' keys (FAQ_KEY, CHUNK_KEY).
FAQ_KIND, PASSAGE_KIND = 0, 1
# tsvector limits: a lexeme is at most 2047 bytes, a position at most 16383.
_MAX_LEXEME_BYTES = 2047
_MAX_POSITION = 16383
# The advisory lock class of lexical writes; the second key is the base's id.
_LOCK_CLASS = 0x6C6578  # "lex"

Tokenizer = Callable[[str], list[str]]

_ready: set[str] = set()
_ready_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class LexDoc:
    """One BM25 document of a chunk row: its variant, kind and tokens."""

    chunk_id: int
    variant: int
    kind: int
    tokens: list[str]


def used(engine: object) -> bool:
    """Whether keyword search runs in this database (PostgreSQL) rather than in memory."""
    return isinstance(engine, Engine) and engine.dialect.name == "postgresql"


def documents(rows: Iterable[KnowledgeChunk], tokenizer: Tokenizer = tokenize) -> list[LexDoc]:
    """The BM25 documents of chunk rows: each FAQ question, each passage with its headings.

    The same texts `KeywordRetriever` indexes (`FaqEntry.questions`, `Chunk.context_text`).
    """
    found: list[LexDoc] = []
    for row in rows:
        if row.kind == FAQ:
            questions = [row.text, *(row.similar.split("\n") if row.similar else [])]
            found.extend(
                LexDoc(row.id or 0, j, FAQ_KIND, tokenizer(q)) for j, q in enumerate(questions)
            )
        else:
            trail = row.headings.split("\n") if row.headings else []
            context = "\n".join((*trail, row.text))
            found.append(LexDoc(row.id or 0, 0, PASSAGE_KIND, tokenizer(context)))
    return found


def quote(term: str) -> str:
    """A lexeme quoted for a tsvector or tsquery literal (``'`` doubled, ``\\`` escaped)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def usable(term: str) -> bool:
    """Whether `term` fits in a tsvector (longer lexemes are left out of the index)."""
    return "\x00" not in term and len(term.encode("utf-8")) <= _MAX_LEXEME_BYTES


def tsvector_literal(tokens: Sequence[str]) -> str:
    """The tsvector of `tokens`: each distinct token with its positions (1-based)."""
    positions: dict[str, list[int]] = {}
    for i, token in enumerate(tokens, 1):
        if usable(token):
            positions.setdefault(token, []).append(min(i, _MAX_POSITION))
    return " ".join(f"{quote(t)}:{','.join(map(str, p))}" for t, p in positions.items())


def ensure(session: Session) -> None:
    """Make the tables when missing (and index the chunks stored before them).

    Runs in the caller's transaction; call it before writing chunk rows.
    """
    engine = session.get_bind()
    key = str(getattr(engine, "url", ""))
    with _ready_lock:
        if key in _ready:
            return
    exists = session.execute(  # type: ignore[call-overload]
        text("SELECT to_regclass(:name)"), {"name": TERMS}
    ).scalar_one()
    if exists is None:
        # Concurrent first writers would race on CREATE ... IF NOT EXISTS: serialise them.
        session.execute(  # type: ignore[call-overload]
            text("SELECT pg_advisory_xact_lock(:cls, 0)"), {"cls": _LOCK_CLASS}
        )
        if (
            session.execute(  # type: ignore[call-overload]
                text("SELECT to_regclass(:name)"), {"name": TERMS}
            ).scalar_one()
            is None
        ):
            _create(session)
            _backfill(session)
        # Made (or seen made) in this transaction, not yet committed: another thread of this
        # process must not skip the check and write into tables it cannot see yet (it waits
        # on the lock above instead). The next call finds them committed and remembers.
        return
    with _ready_lock:
        _ready.add(key)


def forget(engine: object) -> None:
    """Check for the tables again on next use (after they were dropped, say)."""
    with _ready_lock:
        _ready.discard(str(getattr(engine, "url", "")))


def ensure_engine(engine: Engine) -> None:
    """`ensure` in a transaction of its own (a reader's first use)."""
    with Session(engine) as session:
        ensure(session)
        session.commit()


GIN_INDEX = f"{LEX}_terms"
_GIN = f"CREATE INDEX IF NOT EXISTS {GIN_INDEX} ON {LEX} USING gin (terms)"
# What an index build may use at least (GIN sorts its entries in memory when they fit).
BUILD_MEMORY = "512MB"


def rows_in(engine: Engine) -> int:
    """How many BM25 documents the keyword index holds (0 before its tables exist)."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": LEX}).scalar_one() is None:
            return 0
        return int(conn.execute(text(f"SELECT count(*) FROM {LEX}")).scalar_one())  # noqa: S608 - our table name


def defer_index(engine: Engine) -> bool:
    """Drop the GIN index for a bulk load; `build_index` after (see `pgvector.defer_index`).

    Until it is built again keyword searches scan the table (right, slower). False when
    it could not be dropped within a few seconds.
    """
    ensure_engine(engine)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text(f"DROP INDEX IF EXISTS {GIN_INDEX}"))
    except SQLAlchemyError as exc:
        log.warning("bulk load: the keyword index stays (could not drop it: %s)", exc)
        return False
    return True


def build_index(engine: Engine) -> None:
    """Build the GIN index when missing (after a bulk load, or one that was killed)."""
    with engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": LEX}).scalar_one() is None:
            return
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": GIN_INDEX}).scalar_one():
            return
        have = conn.execute(text("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))"))
        want = conn.execute(text("SELECT pg_size_bytes(:m)"), {"m": BUILD_MEMORY})
        if int(have.scalar_one()) < int(want.scalar_one()):
            conn.execute(text(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"))
        conn.execute(text(_GIN))


def _create(session: Session) -> None:
    for statement in (
        f"CREATE TABLE IF NOT EXISTS {LEX} ("
        " chunk_id integer NOT NULL, variant integer NOT NULL, kb_id integer NOT NULL,"
        " kind smallint NOT NULL, dl integer NOT NULL, terms tsvector NOT NULL,"
        " PRIMARY KEY (chunk_id, variant))",
        _GIN,
        f"CREATE TABLE IF NOT EXISTS {TERMS} ("
        " kb_id integer NOT NULL, kind smallint NOT NULL, term text NOT NULL,"
        " df bigint NOT NULL, tokens bigint NOT NULL, PRIMARY KEY (kb_id, term, kind))",
    ):
        session.execute(text(statement))  # type: ignore[call-overload]


def _backfill(session: Session) -> None:
    rows = session.execute(  # type: ignore[call-overload]
        text(
            "SELECT c.id, d.kb_id FROM knowledgechunk c JOIN document d ON d.id = c.document_id "
            "ORDER BY d.kb_id, c.id"
        )
    ).all()
    if not rows:
        return
    log.info("keyword index: tokenizing %d chunks stored before it existed", len(rows))
    by_kb: dict[int, list[int]] = {}
    for chunk_id, kb_id in rows:
        by_kb.setdefault(int(kb_id), []).append(int(chunk_id))
    for kb_id, ids in by_kb.items():
        for start in range(0, len(ids), 1000):
            query = select(KnowledgeChunk).where(
                col(KnowledgeChunk.id).in_(ids[start : start + 1000])
            )
            write(session, kb_id, list(session.exec(query)))


def _lock(session: Session, kb_id: int) -> None:
    session.execute(  # type: ignore[call-overload]
        text("SELECT pg_advisory_xact_lock(:cls, :kb)"), {"cls": _LOCK_CLASS, "kb": kb_id}
    )


def write(
    session: Session,
    kb_id: int,
    rows: Sequence[KnowledgeChunk],
    tokenizer: Tokenizer = tokenize,
) -> None:
    """Index flushed chunk `rows` of base `kb_id` in the session's transaction."""
    docs = documents(rows, tokenizer)
    if not docs:
        return
    ensure(session)
    _lock(session, kb_id)
    df: Counter[tuple[int, str]] = Counter()
    totals: Counter[int] = Counter()
    counts: Counter[int] = Counter()
    lengths: list[int] = []
    for doc in docs:
        df.update((doc.kind, t) for t in set(doc.tokens) if usable(t))
        counts[doc.kind] += 1
        totals[doc.kind] += len(doc.tokens)
        lengths.append(len(doc.tokens))
    session.execute(  # type: ignore[call-overload]
        text(
            f"INSERT INTO {LEX} (chunk_id, variant, kb_id, kind, dl, terms) "  # noqa: S608 - our table name
            "SELECT c, v, :kb, k, l, CAST(t AS tsvector) FROM unnest("
            "CAST(:c AS integer[]), CAST(:v AS integer[]), CAST(:k AS smallint[]),"
            " CAST(:l AS integer[]), CAST(:t AS text[])) AS r(c, v, k, l, t) "
            "ON CONFLICT (chunk_id, variant) DO NOTHING"
        ),
        {
            "kb": kb_id,
            "c": [d.chunk_id for d in docs],
            "v": [d.variant for d in docs],
            "k": [d.kind for d in docs],
            "l": lengths,
            "t": [tsvector_literal(d.tokens) for d in docs],
        },
    )
    deltas = sorted(
        [(kind, term, n, 0) for (kind, term), n in df.items()]
        + [(kind, "", counts[kind], totals[kind]) for kind in counts]
    )
    session.execute(  # type: ignore[call-overload]
        text(
            f"INSERT INTO {TERMS} (kb_id, kind, term, df, tokens) "  # noqa: S608 - our table name
            "SELECT :kb, k, t, n, s FROM unnest(CAST(:k AS smallint[]), CAST(:t AS text[]),"
            " CAST(:n AS bigint[]), CAST(:s AS bigint[])) AS r(k, t, n, s) "
            f"ON CONFLICT (kb_id, term, kind) DO UPDATE SET df = {TERMS}.df + EXCLUDED.df,"
            f" tokens = {TERMS}.tokens + EXCLUDED.tokens"
        ),
        {
            "kb": kb_id,
            "k": [d[0] for d in deltas],
            "t": [d[1] for d in deltas],
            "n": [d[2] for d in deltas],
            "s": [d[3] for d in deltas],
        },
    )


def delete_for_document(session: Session, document_id: int) -> None:
    """Remove a document's rows from the index (before its chunks are deleted)."""
    ensure(session)
    kb_id = session.execute(  # type: ignore[call-overload]
        text("SELECT kb_id FROM document WHERE id = :doc"), {"doc": document_id}
    ).scalar_one_or_none()
    if kb_id is None:
        return
    _lock(session, int(kb_id))
    # The frequencies go down by exactly what the deleted rows held.
    session.execute(  # type: ignore[call-overload]
        text(
            f"WITH gone AS (DELETE FROM {LEX} WHERE chunk_id IN "  # noqa: S608 - our table names
            "(SELECT id FROM knowledgechunk WHERE document_id = :doc) RETURNING kind, dl, terms), "
            "delta AS (SELECT kind, u.lexeme AS term, count(*) AS df, 0::bigint AS tokens "
            "FROM gone, unnest(gone.terms) AS u GROUP BY kind, u.lexeme "
            "UNION ALL SELECT kind, '', count(*), sum(dl) FROM gone GROUP BY kind) "
            f"UPDATE {TERMS} t SET df = t.df - delta.df, tokens = t.tokens - delta.tokens "
            "FROM delta WHERE t.kb_id = :kb AND t.kind = delta.kind AND t.term = delta.term"
        ),
        {"doc": document_id, "kb": kb_id},
    )
    session.execute(  # type: ignore[call-overload]
        text(f"DELETE FROM {TERMS} WHERE kb_id = :kb AND df <= 0"),  # noqa: S608 - our table name
        {"kb": kb_id},
    )
