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
import struct
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


def index_name(dim: int) -> str:
    return f"{table(dim)}_hnsw"


def ensure_table(session: Session, dim: int) -> str:
    """Create the table and HNSW index for `dim`-sized vectors when missing.

    The index is not made while this process defers it (`defer_index`, a bulk load); one
    missing otherwise (a bulk load that was killed) is built here, so the next write heals
    it. Runs in the caller's transaction: a second connection would wait forever for the
    lock on ``knowledgechunk`` that the caller's own inserts hold.
    """
    name = table(dim)
    if name in _deferred or _exists(session, index_name(dim)):
        if name in _deferred and not _exists(session, name):
            _create_table(session, dim)
        return name
    _create_table(session, dim)
    session.execute(  # type: ignore[call-overload]
        text(f"CREATE INDEX IF NOT EXISTS {index_name(dim)} ON {name} {_HNSW}")
    )
    return name


_HNSW = "USING hnsw (embedding vector_cosine_ops)"
_deferred: set[str] = set()
# What an index build may use at least (pgvector builds fastest when the graph fits).
BUILD_MEMORY = "512MB"


def _exists(session: Session, relation: str) -> bool:
    found = session.execute(  # type: ignore[call-overload]
        text("SELECT to_regclass(:name)"), {"name": relation}
    ).scalar_one()
    return found is not None


def _create_table(session: Session, dim: int) -> None:
    name = table(dim)
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


def rows_in(engine: Engine, dim: int) -> int:
    """How many vectors of size `dim` are stored (0 when the table does not exist)."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": table(dim)}).scalar_one() is None:
            return 0
        return int(conn.execute(text(f"SELECT count(*) FROM {table(dim)}")).scalar_one())  # noqa: S608 - table name from an int


def defer_index(engine: Engine, dim: int) -> bool:
    """Drop the HNSW index of `dim`-sized vectors for a bulk load; `build_index` after.

    Inserting into an HNSW index costs pgvector a graph search per row; building it once
    over the loaded rows is several times faster. Until it is built again, dense searches
    of this table scan it exactly (right, slower). False when the index could not be
    dropped within a few seconds (searches holding the table): the load then goes on with it.
    """
    name = table(dim)
    _deferred.add(name)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text(f"DROP INDEX IF EXISTS {index_name(dim)}"))
    except SQLAlchemyError as exc:
        log.warning("bulk load: the HNSW index stays (could not drop it: %s)", exc)
        _deferred.discard(name)
        return False
    log.info("bulk load: HNSW index %s dropped, built again after the load", index_name(dim))
    return True


def build_missing(engine: Engine) -> None:
    """Build every vector table's HNSW index that is missing (a bulk load was killed)."""
    with Session(engine) as session:
        tables = _existing_tables(session)
    for name in tables:
        dim = int(name.rsplit("_", 1)[1])
        if name not in _deferred:
            build_index(engine, dim)


def build_index(engine: Engine, dim: int) -> None:
    """Build the HNSW index of `dim`-sized vectors when missing (after a bulk load).

    With at least `BUILD_MEMORY` of ``maintenance_work_mem`` (the server's own when
    larger) and the server's parallel maintenance workers. Writes to the table wait
    while it builds; searches go on.
    """
    _deferred.discard(table(dim))
    with engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": table(dim)}).scalar_one() is None:
            return
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": index_name(dim)}).scalar_one():
            return
        have = conn.execute(text("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))"))
        want = conn.execute(text("SELECT pg_size_bytes(:m)"), {"m": BUILD_MEMORY})
        if int(have.scalar_one()) < int(want.scalar_one()):
            conn.execute(text(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS {index_name(dim)} ON {table(dim)} {_HNSW}"))


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
    # COPY in PostgreSQL's binary format, on the session's own connection (and transaction).
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cursor:  # type: ignore[union-attr]
        sql = f"COPY {name} (chunk_id, variant, kb_id, model, embedding) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(sql) as copy:
            copy.write(copy_data(kb_id, rows))


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)


def copy_data(kb_id: int, rows: Sequence[ChunkVector]) -> bytes:
    """`rows` as a binary COPY stream of (chunk_id, variant, kb_id, model, embedding).

    A vector's binary form (pgvector's ``vector_recv``): int16 size, int16 0, then the
    values as big-endian float4. Rows must be new: COPY has no ON CONFLICT (their
    chunks were just written, or their old vectors deleted in the same transaction).
    """
    parts = [_COPY_HEADER]
    models: dict[str, bytes] = {}
    for row in rows:
        model = models.setdefault(row.model, row.model.encode("utf-8"))
        values = np.frombuffer(row.vector, dtype="<f4").astype(">f4").tobytes()
        parts.append(
            struct.pack(
                f">hiiiiiii{len(model)}si",
                5,
                4,
                row.chunk_id,
                4,
                row.variant,
                4,
                kb_id,
                len(model),
                model,
                4 + len(values),
            )
        )
        parts.append(struct.pack(">hh", len(values) // 4, 0))
        parts.append(values)
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


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
