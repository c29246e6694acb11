"""Re-embed a knowledge base with the configured model (`bot kb reindex`, the admin API)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session, col, select

from knowledge.embedding import Embedder, EmbeddingError
from knowledge.models import INDEXED, Document, KnowledgeChunk
from knowledge.store import EMBED_FAILED, bump, knowledge_base
from knowledge.vectors import delete_for_document, embed_rows, save

log = logging.getLogger(__name__)


@dataclass
class ReindexResult:
    documents: int = 0
    vectors: int = 0
    failed: int = 0
    error: str = ""


def reindex(
    session: Session,
    kb_name: str,
    embedder: Embedder,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReindexResult:
    """Re-embed every indexed document of `kb_name` with `embedder`, one transaction each.

    `on_progress(documents done, total)`. A document whose embedding fails keeps its old
    vectors and is counted in `failed`; the base's revision moves so workers reload.
    """
    result = ReindexResult()
    kb = knowledge_base(session, kb_name)
    if kb is None or kb.id is None:
        return result
    docs = list(
        session.exec(
            select(Document)
            .where(Document.kb_id == kb.id, Document.status == INDEXED)
            .order_by(col(Document.source))
        )
    )
    for n, doc in enumerate(docs, 1):
        rows = list(
            session.exec(
                select(KnowledgeChunk)
                .where(KnowledgeChunk.document_id == doc.id)
                .order_by(col(KnowledgeChunk.position))
            )
        )
        try:
            found, vectors = embed_rows(embedder, rows)
        except EmbeddingError as exc:
            log.warning("reindex %s: %s not embedded: %s", kb_name, doc.source, exc)
            result.failed += 1
            result.error = str(exc)
        else:
            delete_for_document(session, doc.id or 0)
            save(session, kb.id, embedder.model, rows, found, vectors)
            if doc.error.startswith(EMBED_FAILED):
                doc.error = ""
                session.add(doc)
            bump(session, kb.id)
            session.commit()
            result.documents += 1
            result.vectors += len(found)
        if on_progress is not None:
            on_progress(n, len(docs))
    return result
