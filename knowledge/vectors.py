"""Chunk embeddings in the database: what to embed, writing, reading back, re-embedding.

A passage is embedded as its heading trail plus text (what the keyword index sees), an
FAQ entry as each of its questions separately (variant = question number), since a query
is matched against questions, never the answer. Vectors are float32 blobs (`ChunkVector`)
tagged with the model that made them, so a model change is noticed and `reindex` can
replace them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete
from sqlmodel import Session, col, select

from knowledge import pgvector
from knowledge.embedding import Embedder, Vectors
from knowledge.models import FAQ, INDEXED, ChunkVector, Document, KnowledgeBase, KnowledgeChunk
from knowledge.search import heap

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EmbedTarget:
    """One text to embed: the chunk row's index (in the caller's list) and its variant."""

    row: int
    variant: int
    text: str


def targets(rows: Sequence[KnowledgeChunk]) -> list[EmbedTarget]:
    """The texts to embed for chunk rows: passages with headings, FAQ questions one by one."""
    found: list[EmbedTarget] = []
    for i, row in enumerate(rows):
        if row.kind == FAQ:
            questions = [row.text, *(row.similar.split("\n") if row.similar else [])]
            found.extend(EmbedTarget(i, j, q) for j, q in enumerate(questions))
        else:
            trail = row.headings.split("\n") if row.headings else []
            found.append(EmbedTarget(i, 0, "\n".join((*trail, row.text))))
    return found


def embed_rows(
    embedder: Embedder,
    rows: Sequence[KnowledgeChunk],
    on_progress: ProgressCallback | None = None,
) -> tuple[list[EmbedTarget], Vectors]:
    """Embed `rows` (see `targets`). Raises EmbeddingError when the service fails."""
    found = targets(rows)
    vectors = embedder.embed([t.text for t in found], on_progress=on_progress)
    return found, vectors


def vector_rows(
    model: str, rows: Sequence[KnowledgeChunk], found: Sequence[EmbedTarget], vectors: Vectors
) -> list[ChunkVector]:
    """`ChunkVector` rows for embedded targets; `rows` must have their ids (flushed)."""
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    return [
        ChunkVector(
            chunk_id=rows[t.row].id or 0,
            variant=t.variant,
            model=model,
            dim=dim,
            vector=np.ascontiguousarray(vectors[i], dtype="<f4").tobytes(),
        )
        for i, t in enumerate(found)
    ]


def save(
    session: Session,
    kb_id: int,
    model: str,
    rows: Sequence[KnowledgeChunk],
    found: Sequence[EmbedTarget],
    vectors: Vectors,
) -> None:
    """Store embedded targets of flushed `rows`: blobs, and the pgvector index when present."""
    stored = vector_rows(model, rows, found, vectors)
    session.add_all(stored)
    pgvector.write(session, kb_id, stored)


def delete_for_document(session: Session, document_id: int) -> None:
    """Delete the vectors of a document's chunks (before the chunks themselves)."""
    chunk_ids = select(KnowledgeChunk.id).where(col(KnowledgeChunk.document_id) == document_id)
    session.exec(delete(ChunkVector).where(col(ChunkVector.chunk_id).in_(chunk_ids)))
    pgvector.delete_chunks(
        session, "SELECT id FROM knowledgechunk WHERE document_id = :doc", {"doc": document_id}
    )


@dataclass(frozen=True, slots=True)
class StoredVectors:
    """Vectors of one model read back: one float32 matrix, a row per (chunk id, variant).

    One matrix rather than an array per vector: at 100,000 vectors the per-array objects
    and the ORM rows they came from cost more than the vectors themselves.
    """

    model: str
    dim: int
    matrix: Vectors
    rows: dict[tuple[int, int], int]

    @property
    def by_key(self) -> dict[tuple[int, int], Vectors]:
        """Each vector by (chunk id, variant), as views of `matrix` (for small uses)."""
        return {key: self.matrix[row] for key, row in self.rows.items()}

    def select(self, keys: Sequence[tuple[int, int]]) -> Vectors:
        """The vectors of `keys` (each must be in `rows`), in that order, as a new matrix."""
        if not keys:
            return np.zeros((0, self.dim or 1), dtype=np.float32)
        return self.matrix[np.fromiter((self.rows[k] for k in keys), np.int64, len(keys))]


def load(session: Session, kb_names: Sequence[str], model: str) -> StoredVectors:
    """The vectors made by `model` for the indexed documents of `kb_names`."""
    query = (
        select(ChunkVector.chunk_id, ChunkVector.variant, ChunkVector.vector)
        .join(KnowledgeChunk, col(KnowledgeChunk.id) == ChunkVector.chunk_id)
        .join(Document, col(Document.id) == KnowledgeChunk.document_id)
        .join(KnowledgeBase, col(KnowledgeBase.id) == Document.kb_id)
        .where(
            col(KnowledgeBase.name).in_(list(kb_names)),
            Document.status == INDEXED,
            ChunkVector.model == model,
        )
        .execution_options(yield_per=2000)
    )
    # Plain column rows, streamed into one growing buffer: no ORM object per vector.
    buffer = bytearray()
    rows: dict[tuple[int, int], int] = {}
    size = 0
    for chunk_id, variant, blob in session.exec(query):
        if size and len(blob) != size:
            continue  # a mix of dimensions: keep the first seen; reindex fixes the rest
        if not blob or len(blob) % 4:
            continue  # not float32 values: unreadable, reindex replaces it
        size = len(blob)
        rows[(chunk_id, variant)] = len(rows)
        buffer += blob
    dim = size // 4
    matrix = np.frombuffer(buffer, dtype="<f4").astype(np.float32, copy=False)
    heap.trim()  # the rows read were freed: give their pages back
    return StoredVectors(model, dim, matrix.reshape(len(rows), dim or 1), rows)
