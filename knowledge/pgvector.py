"""Dense search inside PostgreSQL with pgvector: a `vector(dim)` column, HNSW, cosine.

Used when the database is PostgreSQL and the ``vector`` extension can be created there;
otherwise (SQLite, or PostgreSQL without pgvector) the in-memory `DenseIndex` serves.
The `ChunkVector` blobs stay the record of what was embedded by which model (`reindex`
and the model check read them); the table here, one per dimension
(``knowledge_vec_{dim}``, since an HNSW index needs a fixed size), is the search index.
Its rows go with their chunk (``ON DELETE CASCADE``) and are written in the same
transaction as the blobs.

HNSW is approximate; with ``hnsw.ef_search`` at least twice the candidates asked for,
small and medium bases get the exact ranking (tested against SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from knowledge.embedding import Vectors
from knowledge.models import ChunkVector

log = logging.getLogger(__name__)

_available: dict[str, bool] = {}
_lock = threading.Lock()


def available(engine: Engine) -> bool:
    """Whether `engine` is PostgreSQL with the pgvector extension (created when missing)."""
    if engine.dialect.name != "postgresql":
        return False
    key = str(engine.url)
    with _lock:
        if key in _available:
            return _available[key]
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        found = True
    except SQLAlchemyError as exc:
        log.warning("pgvector not available, dense search runs in memory: %s", exc)
        found = False
    with _lock:
        _available[key] = found
    return found


def table(dim: int) -> str:
    if not 0 < dim <= 16000:
        raise ValueError(f"vector size {dim} is outside pgvector's 1..16000")
    return f"knowledge_vec_{int(dim)}"


def ensure_table(session: Session, dim: int) -> str:
    """Create the table and HNSW index for `dim`-sized vectors when missing.

    Runs in the caller's transaction: a second connection would wait forever for the
    lock on ``knowledgechunk`` that the caller's own inserts hold.
    """
    name = table(dim)
    if (
        session.execute(  # type: ignore[call-overload]
            text("SELECT to_regclass(:name)"), {"name": name}
        ).scalar_one()
        is not None
    ):
        return name
    # Concurrent first writers would race on CREATE ... IF NOT EXISTS: serialise them.
    session.execute(  # type: ignore[call-overload]
        text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name}
    )
    session.execute(  # type: ignore[call-overload]
        text(
            f"CREATE TABLE IF NOT EXISTS {name} ("
            " chunk_id integer NOT NULL REFERENCES knowledgechunk(id) ON DELETE CASCADE,"
            " variant integer NOT NULL, kb_id integer NOT NULL, model varchar(200) NOT NULL,"
            f" embedding vector({dim}) NOT NULL, PRIMARY KEY (chunk_id, variant))"
        )
    )
    session.execute(  # type: ignore[call-overload]
        text(
            f"CREATE INDEX IF NOT EXISTS {name}_hnsw ON {name} "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    )
    return name


def literal(vector: Vectors) -> str:
    """pgvector's text form of a vector: ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"


def write(session: Session, kb_id: int, rows: Sequence[ChunkVector]) -> None:
    """Insert (or replace) the index rows of `rows` in the session's transaction."""
    if not rows:
        return
    engine = session.get_bind()
    if not isinstance(engine, Engine) or not available(engine):
        return
    name = ensure_table(session, rows[0].dim)
    params = [
        {
            "chunk_id": row.chunk_id,
            "variant": row.variant,
            "kb_id": kb_id,
            "model": row.model,
            "embedding": literal(np.frombuffer(row.vector, dtype="<f4")),
        }
        for row in rows
    ]
    session.execute(  # type: ignore[call-overload]
        text(
            f"INSERT INTO {name} (chunk_id, variant, kb_id, model, embedding) "  # noqa: S608 - table name from an int
            "VALUES (:chunk_id, :variant, :kb_id, :model, CAST(:embedding AS vector)) "
            "ON CONFLICT (chunk_id, variant) DO UPDATE SET model = EXCLUDED.model, "
            "kb_id = EXCLUDED.kb_id, embedding = EXCLUDED.embedding"
        ),
        params,
    )


def delete_chunks(session: Session, chunk_ids_sql: str, params: dict[str, object]) -> None:
    """Delete index rows whose chunk is in the subquery `chunk_ids_sql`, every dimension."""
    engine = session.get_bind()
    if not isinstance(engine, Engine) or not available(engine):
        return
    for name in _existing_tables(session):
        session.execute(  # type: ignore[call-overload]
            # Our own table name and subquery text; the values are bound parameters.
            text(f"DELETE FROM {name} WHERE chunk_id IN ({chunk_ids_sql})"),  # noqa: S608
            params,
        )


def _existing_tables(session: Session) -> list[str]:
    rows = session.execute(  # type: ignore[call-overload]
        text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'knowledge_vec_%'")
    )
    return [str(r[0]) for r in rows]


class PgVectorSearch:
    """The `VectorSearch` of `HybridRetriever` answered by PostgreSQL (HNSW, cosine).

    Keys are `PgKeywordRetriever.dense_key`'s: twice the chunk id, plus one for a passage;
    nothing about the rows is held in the process, so rows written by any process are
    searched at once. The table is the one of the query vector's size.

    Args:
        engine: the PostgreSQL engine.
        kb_ids: the knowledge bases searched.
        model: the embedding model whose vectors are searched.
    """

    n_keys = 0  # keys are chunk-id based; there is no dense range to check

    def __init__(self, engine: Engine, kb_ids: Sequence[int], model: str) -> None:
        self._engine = engine
        self._kb_ids = list(kb_ids)
        self._model = model
        self._tables: set[str] = set()

    def search(
        self, query: Vectors, n: int, also: Sequence[int] = ()
    ) -> tuple[list[int], dict[int, float]]:
        """The `n` nearest keys best first, and the cosine of those and of keys `also`."""
        name = table(int(np.asarray(query).size))
        vec = literal(query)
        sims: dict[int, float] = {}
        top: list[int] = []
        # A passage's key is odd; the kind comes from the chunk row.
        select = (
            f"SELECT 2 * v.chunk_id + CASE WHEN c.kind = 'passage' THEN 1 ELSE 0 END,"  # noqa: S608 - table name from an int
            " 1 - (v.embedding <=> CAST(:q AS vector)) AS cos"
            f" FROM {name} v JOIN knowledgechunk c ON c.id = v.chunk_id"
        )
        with self._engine.connect() as conn:
            # Once made the table stays (a query per search to check it was a round trip).
            if name not in self._tables:
                if conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar_one() is None:
                    conn.rollback()
                    return [], {}
                self._tables.add(name)
            # SET LOCAL lasts until this transaction ends (the connection's, at release).
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, 4 * n)}"))
            if n > 0:
                rows = conn.execute(
                    text(
                        "SELECT 2 * v.chunk_id + CASE WHEN c.kind = 'passage' THEN 1 ELSE 0 END,"  # noqa: S608 - table name from an int
                        " 1 - v.distance FROM ("
                        " SELECT chunk_id, embedding <=> CAST(:q AS vector) AS distance"
                        f" FROM {name} WHERE model = :model AND kb_id = ANY(:kbs)"
                        " ORDER BY embedding <=> CAST(:q AS vector) LIMIT :limit) v"
                        " JOIN knowledgechunk c ON c.id = v.chunk_id"
                    ),
                    {"q": vec, "model": self._model, "kbs": self._kb_ids, "limit": 4 * n},
                )
                for key, cos in rows:
                    key = int(key)
                    if key not in sims:
                        top.append(key)
                    sims[key] = max(sims.get(key, -1.0), float(cos))
            wanted = sorted({key // 2 for key in also if key not in sims})
            if wanted:
                rows = conn.execute(
                    text(f"{select} WHERE v.model = :model AND v.chunk_id = ANY(:ids)"),
                    {"q": vec, "model": self._model, "ids": wanted},
                )
                for key, cos in rows:
                    key = int(key)
                    sims[key] = max(sims.get(key, -1.0), float(cos))
            conn.rollback()
        top.sort(key=lambda key: (-sims[key], key))
        return top[:n], sims
