"""Knowledge bases in the database: ingest files, list and remove documents, read them back.

A document is keyed by its source name within its knowledge base and remembers the sha256
of the bytes it was built from:

- the same bytes again (under any name in that base) are a no-op (`UNCHANGED`);
- new bytes under a known source name replace that document's chunks (`REPLACED`);
- a file that cannot be loaded (`LoadError`) is recorded with its error (`FAILED`) and
  changes nothing else: if that source was indexed before, its old chunks stay in service
  and the document shows the error until a good file replaces it.

Every change to a base's chunks bumps `KnowledgeBase.revision` in the same transaction;
`version` reads it, so workers can rebuild their in-memory index when it moves. On
PostgreSQL the keyword index lives in the database (`knowledge.lexical`): a document's
rows there are written and deleted with its chunks, in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from knowledge import lexical, vectors
from knowledge.embedding import Embedder, EmbeddingError
from knowledge.loaders import SUPPORTED_SUFFIXES, LoadError, LoadResult, load_file
from knowledge.loaders.base import FaqEntry
from knowledge.models import (
    FAILED,
    FAQ,
    INDEXED,
    PASSAGE,
    Document,
    KnowledgeBase,
    KnowledgeChunk,
)
from knowledge.text.chunking import Chunk
from knowledge.text.tokenize import tokenize

log = logging.getLogger(__name__)

DEFAULT_KB = "default"
# A document's error while its chunks have no vectors (cleared by `reindex.reindex`).
EMBED_FAILED = "向量化失败（仅关键词检索）："

# IngestResult.outcome values.
ADDED = "added"
UNCHANGED = "unchanged"
REPLACED = "replaced"
FAILED_OUTCOME = "failed"

ProgressCallback = Callable[["IngestResult"], None]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What `ingest` did with one file: its outcome, document row, chunk count and error."""

    outcome: str  # ADDED, UNCHANGED, REPLACED or FAILED_OUTCOME
    source: str
    document: Document | None
    chunks: int = 0
    error: str = ""


def knowledge_base(session: Session, name: str, *, create: bool = False) -> KnowledgeBase | None:
    """The knowledge base called `name`; made when missing and `create` is set."""
    found = session.exec(select(KnowledgeBase).where(KnowledgeBase.name == name)).first()
    if found is not None or not create:
        return found
    session.add(KnowledgeBase(name=name))
    try:
        session.commit()
    except IntegrityError:  # made by a concurrent ingest in between
        session.rollback()
    return session.exec(select(KnowledgeBase).where(KnowledgeBase.name == name)).one()


def kb_ids(session: Session, names: Sequence[str]) -> list[int]:
    """The ids of the knowledge bases called `names` that exist."""
    query = select(KnowledgeBase.id).where(col(KnowledgeBase.name).in_(list(names)))
    return sorted(i for i in session.exec(query) if i is not None)


def file_hash(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def folder_files(root: Path) -> list[tuple[Path, str]]:
    """The knowledge files under `root` and their source names, as `load_folder` sees them.

    Hidden files and types that are not knowledge are skipped; sources are paths relative
    to `root` with ``/`` separators, in name order.
    """
    files = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if file.suffix.lower() in SUPPORTED_SUFFIXES:
            files.append((file, relative.as_posix()))
    return files


def ingest(
    session: Session,
    kb_name: str,
    path: str | Path,
    *,
    source: str | None = None,
    embedder: Embedder | None = None,
    on_embed: vectors.ProgressCallback | None = None,
) -> IngestResult:
    """Add, replace or skip one file in knowledge base `kb_name` (made when missing).

    With an `embedder`, the chunks' vectors are stored with them (`on_embed(done, total)`
    reports texts embedded). When the embedding service fails, the document is still
    indexed for keyword search and shows the error; `bot kb reindex` embeds it later.
    """
    path = Path(path)
    source = source or path.name
    try:
        return _ingest(session, kb_name, path, source, embedder, on_embed)
    except IntegrityError:
        # Another process added the same source in between: go again, now as a replace.
        session.rollback()
        return _ingest(session, kb_name, path, source, embedder, on_embed)


def _ingest(
    session: Session,
    kb_name: str,
    path: Path,
    source: str,
    embedder: Embedder | None,
    on_embed: vectors.ProgressCallback | None,
) -> IngestResult:
    kb = knowledge_base(session, kb_name, create=True)
    if kb is None or kb.id is None:  # pragma: no cover - made just above
        raise RuntimeError(f"knowledge base {kb_name!r} could not be made")
    try:
        digest = file_hash(path)
    except OSError as exc:
        return record_failure(session, kb, source, "", f"cannot read: {exc.strerror or exc}")
    same_bytes = session.exec(
        select(Document).where(
            Document.kb_id == kb.id, Document.content_hash == digest, Document.status == INDEXED
        )
    ).first()
    if same_bytes is not None:
        if same_bytes.source == source and same_bytes.error:
            same_bytes.error = ""  # the failed upload it showed has been superseded
            session.add(same_bytes)
            session.commit()
        return IngestResult(UNCHANGED, source, same_bytes, same_bytes.chunk_count)
    try:
        loaded = load_file(path, source=source)
    except LoadError as exc:
        return record_failure(session, kb, source, digest, exc.reason)
    results = write_loaded(session, kb, [Loaded(source, digest, loaded)], embedder, on_embed)
    if results[0].document is not None:
        session.refresh(results[0].document)
    return results[0]


@dataclass(frozen=True, slots=True)
class Loaded:
    """A file read and chunked, ready to be written: its source name, sha256 and entries."""

    source: str
    digest: str
    loaded: LoadResult


def write_loaded(
    session: Session,
    kb: KnowledgeBase,
    files: Sequence[Loaded],
    embedder: Embedder | None = None,
    on_embed: vectors.ProgressCallback | None = None,
    tokenizer: lexical.Tokenizer | None = None,
) -> list[IngestResult]:
    """Write loaded `files` (distinct sources) into `kb` in one transaction, and commit.

    A source already indexed with the same bytes is left as it is (UNCHANGED); one indexed
    with other bytes has its chunks replaced. With an `embedder`, the chunks of all the
    files are embedded together first (in its batches), before the transaction opens; when
    that fails, the files are still written for keyword search and show the error.
    `tokenizer` (PostgreSQL's keyword index) may look up tokens made beforehand.

    Raises:
        IntegrityError: another process added one of the sources meanwhile (nothing of
            this call was written; the caller can write the files again, one by one).
    """
    kb_id, kb_name = kb.id or 0, kb.name  # a stored row always has its id
    results: dict[int, IngestResult] = {}
    plans: list[tuple[int, Loaded, Document | None, str, list[KnowledgeChunk]]] = []
    for i, file in enumerate(files):
        doc = _document(session, kb_id, file.source)
        if doc is not None and doc.status == INDEXED and doc.content_hash == file.digest:
            results[i] = IngestResult(UNCHANGED, file.source, doc, doc.chunk_count)
            continue
        outcome = ADDED if doc is None or doc.status == FAILED else REPLACED
        plans.append((i, file, doc, outcome, chunk_rows(file.loaded, 0)))
    rows = [row for *_, doc_rows in plans for row in doc_rows]
    # Embed before writing: no transaction stays open while the service is called.
    embedded, embed_error = None, ""
    if embedder is not None and rows:
        try:
            embedded = vectors.embed_rows(embedder, rows, on_embed)
        except EmbeddingError as exc:
            embed_error = f"{EMBED_FAILED}{exc}"
            log.warning("knowledge %s: %d files not embedded: %s", kb_name, len(plans), exc)
    now = datetime.now(UTC)
    in_db = lexical.used(session.get_bind())
    if in_db:
        lexical.ensure(session)  # before any chunk row is written (see lexical.ensure)
    docs: list[Document] = []
    for _, file, doc, _, doc_rows in plans:
        if doc is None:
            doc = Document(kb_id=kb_id, source=file.source, created_at=now)
        elif doc.id is not None:
            _delete_chunks(session, doc.id)
        doc.content_hash, doc.status, doc.error = file.digest, INDEXED, embed_error[:2000]
        doc.chunk_count, doc.updated_at = len(doc_rows), now
        session.add(doc)
        docs.append(doc)
    session.flush()  # assigns the documents' ids
    for doc, (*_, doc_rows) in zip(docs, plans, strict=True):
        for row in doc_rows:
            row.document_id = doc.id or 0
    session.add_all(rows)
    session.flush()  # assigns the chunk ids the vectors and the keyword index point to
    if embedded is not None and embedder is not None:
        vectors.save(session, kb_id, embedder.model, rows, *embedded)
    if in_db:
        lexical.write(session, kb_id, rows, tokenizer or tokenize)
    if plans:
        bump(session, kb_id)
    session.commit()
    for doc, (i, file, _, outcome, doc_rows) in zip(docs, plans, strict=True):
        results[i] = IngestResult(outcome, file.source, doc, len(doc_rows))
        log.info("knowledge %s: %s %s (%d chunks)", kb_name, outcome, file.source, len(doc_rows))
    return [results[i] for i in range(len(files))]


def ingest_folder(
    session: Session,
    kb_name: str,
    path: str | Path,
    *,
    on_result: ProgressCallback | None = None,
    embedder: Embedder | None = None,
) -> list[IngestResult]:
    """`ingest` every knowledge file under `path` (recursively), sources relative to it.

    Raises:
        FileNotFoundError: `path` is not a directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge folder not found: {root}")
    results = []
    for file, source in folder_files(root):
        result = ingest(session, kb_name, file, source=source, embedder=embedder)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def list_documents(session: Session, kb_name: str) -> list[Document]:
    """The documents of a knowledge base (none when it does not exist), by source."""
    kb = knowledge_base(session, kb_name)
    if kb is None:
        return []
    query = select(Document).where(Document.kb_id == kb.id).order_by(col(Document.source))
    return list(session.exec(query))


def remove(session: Session, kb_name: str, source_or_id: str | int) -> Document | None:
    """Delete a document (by source name, else by id) and every chunk of it.

    Returns the deleted document, or None when there is no such document.
    """
    kb = knowledge_base(session, kb_name)
    if kb is None or kb.id is None:
        return None
    doc = _document(session, kb.id, str(source_or_id))
    if doc is None and str(source_or_id).isdigit():
        by_id = session.get(Document, int(source_or_id))
        doc = by_id if by_id is not None and by_id.kb_id == kb.id else None
    if doc is None:
        return None
    _delete_chunks(session, doc.id or 0)
    session.delete(doc)
    bump(session, kb.id)
    session.commit()
    log.info("knowledge %s: removed %s", kb_name, doc.source)
    return doc


def version(session: Session, kb_name: str) -> str:
    """A string that changes whenever the chunks of `kb_name` change; "" if it does not exist."""
    kb = knowledge_base(session, kb_name)
    if kb is None:
        return ""
    session.refresh(kb)  # another process may have bumped it since this session read it
    return f"{kb.id}:{kb.revision}"


def load_chunks(session: Session, kb_names: Sequence[str]) -> LoadResult:
    """The passages and FAQ entries of the indexed documents of `kb_names`.

    In the order `load_folder` yields them for the same files (by base, source, position),
    so an index built from either scores and breaks ties the same way.
    """
    return load_chunks_with_ids(session, kb_names)[0]


def load_chunks_with_ids(
    session: Session, kb_names: Sequence[str]
) -> tuple[LoadResult, list[int], list[int]]:
    """`load_chunks`, plus the row ids of its passages and of its FAQ entries, in order."""
    query = (
        select(KnowledgeChunk, Document.source)
        .join(Document, col(Document.id) == KnowledgeChunk.document_id)
        .join(KnowledgeBase, col(KnowledgeBase.id) == Document.kb_id)
        .where(col(KnowledgeBase.name).in_(list(kb_names)), Document.status == INDEXED)
        .order_by(col(KnowledgeBase.name), col(Document.source), col(KnowledgeChunk.position))
    )
    chunks: list[Chunk] = []
    faqs: list[FaqEntry] = []
    chunk_ids: list[int] = []
    faq_ids: list[int] = []
    for row, source in session.exec(query):
        if row.kind == FAQ:
            similar = tuple(row.similar.split("\n")) if row.similar else ()
            faqs.append(FaqEntry(row.text, row.answer or "", source, similar))
            faq_ids.append(row.id or 0)
        else:
            headings = tuple(row.headings.split("\n")) if row.headings else ()
            chunks.append(Chunk(row.text, source, row.section, headings))
            chunk_ids.append(row.id or 0)
    return LoadResult(tuple(chunks), tuple(faqs)), chunk_ids, faq_ids


def document_stamps(session: Session, kb_names: Sequence[str]) -> dict[int, str]:
    """The indexed documents of `kb_names`: id -> content hash (changes with the chunks)."""
    query = (
        select(Document.id, Document.content_hash)
        .join(KnowledgeBase, col(KnowledgeBase.id) == Document.kb_id)
        .where(col(KnowledgeBase.name).in_(list(kb_names)), Document.status == INDEXED)
    )
    return {int(doc_id or 0): digest for doc_id, digest in session.exec(query)}


@dataclass(frozen=True, slots=True)
class StoredEntries:
    """Passages and FAQ entries read back, with each one's document id and chunk row id."""

    loaded: LoadResult
    chunk_docs: list[int]
    faq_docs: list[int]
    chunk_ids: list[int]
    faq_ids: list[int]


def load_documents(
    session: Session, kb_names: Sequence[str], document_ids: Sequence[int] | None = None
) -> StoredEntries:
    """`load_chunks` (of only `document_ids` when given), with each entry's document id
    and row id, in order."""
    query = (
        select(KnowledgeChunk, Document.source, Document.id)
        .join(Document, col(Document.id) == KnowledgeChunk.document_id)
        .join(KnowledgeBase, col(KnowledgeBase.id) == Document.kb_id)
        .where(col(KnowledgeBase.name).in_(list(kb_names)), Document.status == INDEXED)
        .order_by(col(KnowledgeBase.name), col(Document.source), col(KnowledgeChunk.position))
    )
    if document_ids is not None:
        query = query.where(col(Document.id).in_(list(document_ids)))
    chunks: list[Chunk] = []
    faqs: list[FaqEntry] = []
    found = StoredEntries(LoadResult((), ()), [], [], [], [])
    for row, source, doc_id in session.exec(query):
        if row.kind == FAQ:
            similar = tuple(row.similar.split("\n")) if row.similar else ()
            faqs.append(FaqEntry(row.text, row.answer or "", source, similar))
            found.faq_docs.append(int(doc_id or 0))
            found.faq_ids.append(row.id or 0)
        else:
            headings = tuple(row.headings.split("\n")) if row.headings else ()
            chunks.append(Chunk(row.text, source, row.section, headings))
            found.chunk_docs.append(int(doc_id or 0))
            found.chunk_ids.append(row.id or 0)
    return StoredEntries(
        LoadResult(tuple(chunks), tuple(faqs)),
        found.chunk_docs,
        found.faq_docs,
        found.chunk_ids,
        found.faq_ids,
    )


def chunk_rows(loaded: LoadResult, document_id: int = 0) -> list[KnowledgeChunk]:
    """The chunk rows of a loaded file: its passages, then its FAQ entries, in order."""
    rows = [
        KnowledgeChunk(
            document_id=document_id,
            kind=PASSAGE,
            position=i,
            text=c.text,
            section=c.section,
            headings="\n".join(c.headings),
        )
        for i, c in enumerate(loaded.chunks)
    ]
    offset = len(rows)
    rows.extend(
        KnowledgeChunk(
            document_id=document_id,
            kind=FAQ,
            position=offset + i,
            text=e.question,
            answer=e.answer,
            similar="\n".join(e.similar),
        )
        for i, e in enumerate(loaded.faqs)
    )
    return rows


def _document(session: Session, kb_id: int, source: str) -> Document | None:
    query = select(Document).where(Document.kb_id == kb_id, Document.source == source)
    return session.exec(query).first()


def record_failure(
    session: Session, kb: KnowledgeBase, source: str, digest: str, reason: str
) -> IngestResult:
    kb_id = kb.id or 0  # a stored row always has its id
    doc = _document(session, kb_id, source)
    if doc is None:
        doc = Document(kb_id=kb_id, source=source, content_hash=digest, status=FAILED)
    elif doc.status == FAILED:
        doc.content_hash = digest
    # An indexed document keeps its hash, status and chunks; it only shows the error.
    doc.error, doc.updated_at = reason[:2000], datetime.now(UTC)
    session.add(doc)
    session.commit()
    session.refresh(doc)
    log.warning("knowledge %s: failed %s: %s", kb.name, source, reason)
    return IngestResult(FAILED_OUTCOME, source, doc, 0, reason)


def _delete_chunks(session: Session, document_id: int) -> None:
    vectors.delete_for_document(session, document_id)
    if lexical.used(session.get_bind()):
        lexical.delete_for_document(session, document_id)
    session.exec(delete(KnowledgeChunk).where(col(KnowledgeChunk.document_id) == document_id))


def bump(session: Session, kb_id: int) -> None:
    """Move the base's revision (in the caller's transaction), so workers reload."""
    session.exec(
        update(KnowledgeBase)
        .where(col(KnowledgeBase.id) == kb_id)
        .values(revision=KnowledgeBase.revision + 1, updated_at=datetime.now(UTC))
    )


def outcomes(results: Iterable[IngestResult]) -> dict[str, int]:
    """How many results had each outcome (every outcome present, zero or not)."""
    counts = dict.fromkeys((ADDED, UNCHANGED, REPLACED, FAILED_OUTCOME), 0)
    for result in results:
        counts[result.outcome] += 1
    return counts
