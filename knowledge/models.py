"""Database tables (SQLModel) of the knowledge base: bases, documents and their chunks.

`KnowledgeBase.revision` goes up in the same transaction as every change to a base's
chunks, so a worker can tell cheaply that its in-memory index is stale (`store.version`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

# Document.status values.
INDEXED = "indexed"
FAILED = "failed"
# KnowledgeChunk.kind values.
PASSAGE = "passage"
FAQ = "faq"


def _now() -> datetime:
    return datetime.now(UTC)


class KnowledgeBase(SQLModel, table=True):
    """A named set of documents that apps answer from (default: ``default``)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    revision: int = 0
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class Document(SQLModel, table=True):
    """One uploaded file of a knowledge base, by source name, with its load outcome."""

    __table_args__ = (UniqueConstraint("kb_id", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    kb_id: int = Field(foreign_key="knowledgebase.id", index=True)
    source: str = Field(max_length=500)  # the file name, relative to the folder added
    content_hash: str = Field(default="", max_length=64, index=True)  # sha256 hex of the bytes
    status: str = Field(default=INDEXED, max_length=16)  # INDEXED or FAILED
    error: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    chunk_count: int = 0
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)


class KnowledgeChunk(SQLModel, table=True):
    """A passage of a document, or one FAQ entry (questions matched, answer returned)."""

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="document.id", index=True)
    kind: str = Field(max_length=16)  # PASSAGE or FAQ
    position: int = 0  # order within the document
    # Passage: its text. FAQ: the standard question.
    text: str = Field(sa_column=Column(Text, nullable=False))
    # What a hit shows as its section: the nearest heading (passage) or "FAQ".
    section: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # The full heading trail, one heading per line (indexed with the text).
    headings: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    answer: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # FAQ: the similar questions, one per line.
    similar: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class ChunkVector(SQLModel, table=True):
    """The embedding of a chunk: a passage's text, or one question of an FAQ entry.

    `variant` is 0 for a passage and the question's number for an FAQ entry (0 the
    standard question, then its similar questions). `vector` holds `dim` little-endian
    float32 values scaled to unit length; `model` names the embedding model, so vectors of
    another model are ignored until `bot kb reindex` replaces them.
    """

    chunk_id: int = Field(foreign_key="knowledgechunk.id", primary_key=True)
    variant: int = Field(default=0, primary_key=True)
    model: str = Field(max_length=200, index=True)
    dim: int
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Synonym(SQLModel, table=True):
    """An operator's wording variant and its standard word (`knowledge.synonym_table`):
    a product nickname, a shop's own term. One list for every knowledge base."""

    id: int | None = Field(default=None, primary_key=True)
    variant: str = Field(max_length=32, unique=True)
    canonical: str = Field(max_length=32, index=True)
    created_at: datetime = Field(default_factory=_now)
