"""Ingestion jobs: many files into one knowledge base, read in parallel, written in batches.

`run` is what `bot kb add` and the console's uploads (`bot.ingest`) both do:

- **Reading** (hash, load, chunk; on PostgreSQL also the keyword tokens) runs in worker
  processes when `workers` > 1, a few files ahead of the writer; in the caller's process
  otherwise (a Celery worker's pool process may not start processes of its own).
- **One writer**, this process: the chunks of up to `BATCH_FILES` files or about
  `BATCH_CHUNKS` chunks are embedded together (the embedder's batches, retries and rate
  limit) and written in one transaction.
- **Resumable by construction.** A document is keyed by its source name and remembers the
  sha256 of its bytes; a batch is committed whole or not at all. Killed mid-way, the same
  job run again skips every file already stored with the same bytes (without loading it)
  and writes the rest: each document once, never half of one.
- **Bulk loads on PostgreSQL.** When a job is about to add more chunks than the database
  holds (and at least `BULK_MIN_CHUNKS`), the search indexes (pgvector's HNSW, the keyword
  GIN) are dropped after the first batch and built once at the end (`defer_index`,
  `build_index`), several times faster than inserting into them row by row. Meanwhile
  searches scan those tables: right, slower. A job killed meanwhile leaves them missing;
  the next job builds them when it starts, and the next write of vectors the HNSW one.
- A file that cannot be read or loaded is recorded as failed (`store.record_failure`) and
  reported like any other result; the others go on.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from knowledge import lexical, pgvector, store
from knowledge.embedding import Embedder
from knowledge.loaders import LoadError, LoadResult, load_file
from knowledge.models import INDEXED, ChunkVector, Document
from knowledge.text.tokenize import tokenize

log = logging.getLogger(__name__)

BATCH_FILES = 50
BATCH_CHUNKS = 2000
BULK_MIN_CHUNKS = 10_000
_AHEAD_PER_WORKER = 4  # files read ahead of the writer, per worker process

ResultCallback = Callable[[store.IngestResult], None]
EmbedCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Read:
    """A file as a reader left it: its digest, and its entries or why it failed."""

    source: str
    digest: str
    loaded: LoadResult | None = None
    error: str = ""
    known: bool = False  # stored already with the same bytes: not loaded
    tokens: dict[str, list[str]] | None = None  # keyword tokens by text (PostgreSQL)


# Set in each reader process by `_start_reader`: the digests stored already.
_known: frozenset[str] = frozenset()


def _start_reader(known: frozenset[str], log_level: int | None = None) -> None:
    global _known  # a reader process's one piece of state
    _known = known
    if log_level is not None:  # a process of its own: as quiet as the job's process
        logging.getLogger().setLevel(log_level)


def read(path: str, source: str, tokens: bool) -> Read:
    """Hash, load and chunk one file (in a reader process); tokenize when `tokens`."""
    try:
        digest = store.file_hash(Path(path))
    except OSError as exc:
        return Read(source, "", error=f"cannot read: {exc.strerror or exc}")
    if digest in _known:
        return Read(source, digest, known=True)
    try:
        loaded = load_file(Path(path), source=source)
    except LoadError as exc:
        return Read(source, digest, error=exc.reason)
    found: dict[str, list[str]] | None = None
    if tokens:
        found = {}
        cache = found

        def keep(text: str) -> list[str]:
            return cache.setdefault(text, tokenize(text))

        lexical.documents(store.chunk_rows(loaded), keep)
    return Read(source, digest, loaded, tokens=found)


def run(
    engine: Engine,
    kb_name: str,
    files: Sequence[tuple[Path, str]],
    *,
    embedder: Embedder | None = None,
    workers: int = 0,
    on_result: ResultCallback | None = None,
    on_embed: EmbedCallback | None = None,
    bulk: bool | None = None,
) -> list[store.IngestResult]:
    """Ingest `files` ((path, source) pairs) into `kb_name`, made when missing.

    `on_result` hears of every file once, when its outcome is committed;
    `on_embed(done, total)` of each embedded batch of texts. `bulk`: None decides by size
    (see the module), True drops the search indexes after the first batch whatever the
    size, False never drops them.
    """
    with Session(engine) as session:
        kb = store.knowledge_base(session, kb_name, create=True)
        if kb is None or kb.id is None:  # pragma: no cover - made just above
            raise RuntimeError(f"knowledge base {kb_name!r} could not be made")
        stored = {
            doc.content_hash: doc
            for doc in session.exec(
                select(Document).where(Document.kb_id == kb.id, Document.status == INDEXED)
            )
        }
    if lexical.used(engine):  # indexes a killed bulk load left missing
        lexical.build_index(engine)
        if pgvector.available(engine):
            pgvector.build_missing(engine)
    writer = _Writer(engine, kb_name, embedder, on_result, on_embed, bulk, len(files))
    writer.stored = stored
    try:
        for item in _reads(files, frozenset(stored), workers, lexical.used(engine)):
            writer.take(item)
        writer.flush()
    finally:
        writer.finish()
    return writer.results


def _reads(
    files: Sequence[tuple[Path, str]], known: frozenset[str], workers: int, tokens: bool
) -> Iterator[Read]:
    """Each file read, in order: by `workers` processes, or here when fewer than two."""
    if workers < 2 or len(files) < 2:
        _start_reader(known)
        for path, source in files:
            yield read(str(path), source, tokens)
        return
    # spawn: this process may hold threads (a progress bar, HTTP pools) a fork would copy.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_reader,
        initargs=(known, logging.getLogger().getEffectiveLevel()),
    ) as pool:
        pending: deque[Future[Read]] = deque()
        queue = iter(files)
        try:
            for path, source in queue:
                pending.append(pool.submit(read, str(path), source, tokens))
                if len(pending) >= workers * _AHEAD_PER_WORKER:
                    break
            while pending:
                yield pending.popleft().result()
                for path, source in queue:
                    pending.append(pool.submit(read, str(path), source, tokens))
                    break
        finally:
            for future in pending:
                future.cancel()


class _Writer:
    """The job's one writer: batches of read files into the database."""

    def __init__(
        self,
        engine: Engine,
        kb_name: str,
        embedder: Embedder | None,
        on_result: ResultCallback | None,
        on_embed: EmbedCallback | None,
        bulk: bool | None,
        total: int,
    ) -> None:
        self.engine = engine
        self.kb_name = kb_name
        self.embedder = embedder
        self.on_result = on_result
        self.on_embed = on_embed
        self.bulk = bulk
        self.total = total
        self.results: list[store.IngestResult] = []
        self.batch: list[Read] = []
        self.chunks = 0
        self.seen: dict[str, str] = {}  # digest -> source, of the files of this job
        self.stored: dict[str, Document] = {}  # digest -> document, stored before the job
        self.deferred_dim = 0  # the vector size whose index this job dropped
        self.deferred_lex = False  # whether this job dropped the keyword index

    def take(self, item: Read) -> None:
        if item.known or (item.digest and item.digest in self.seen and not item.error):
            doc = self.stored.get(item.digest)
            chunks = doc.chunk_count if doc is not None else 0
            self._report(store.IngestResult(store.UNCHANGED, item.source, doc, chunks))
            return
        if item.error or item.loaded is None:
            with Session(self.engine) as session:
                kb = store.knowledge_base(session, self.kb_name, create=True)
                if kb is not None:
                    result = store.record_failure(session, kb, item.source, item.digest, item.error)
                    self._report(result)
            return
        self.seen[item.digest] = item.source
        self.batch.append(item)
        self.chunks += len(item.loaded.chunks) + len(item.loaded.faqs)
        if len(self.batch) >= BATCH_FILES or self.chunks >= BATCH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch, self.chunks = self.batch, [], 0
        tokens: dict[str, list[str]] = {}
        for item in batch:
            tokens.update(item.tokens or {})

        def tokenizer(text: str) -> list[str]:
            return tokens[text] if text in tokens else tokenize(text)

        loaded = [store.Loaded(i.source, i.digest, i.loaded) for i in batch if i.loaded]
        with Session(self.engine) as session:
            kb = store.knowledge_base(session, self.kb_name, create=True)
            if kb is None:  # pragma: no cover - made by `run`
                return
            try:
                written = store.write_loaded(
                    session, kb, loaded, self.embedder, self.on_embed, tokenizer
                )
            except IntegrityError:
                # Another process added one of these sources meanwhile: one by one, as a
                # replace where it did.
                session.rollback()
                written = []
                for file in loaded:
                    try:
                        written += store.write_loaded(
                            session, kb, [file], self.embedder, self.on_embed, tokenizer
                        )
                    except IntegrityError:
                        session.rollback()
                        written += store.write_loaded(
                            session, kb, [file], self.embedder, self.on_embed, tokenizer
                        )
            for result in written:
                self._report(result)
        self._maybe_defer(written)

    def _maybe_defer(self, written: list[store.IngestResult]) -> None:
        """After the first batch, drop the search indexes if the job will outgrow them."""
        if self.bulk is False or not lexical.used(self.engine):
            return
        forced, self.bulk = self.bulk, False  # decided once
        added = sum(r.chunks for r in written if r.outcome != store.UNCHANGED)
        coming = added / max(1, len(written)) * (self.total - len(self.results))
        big = coming >= max(BULK_MIN_CHUNKS, lexical.rows_in(self.engine))
        if not big and forced is not True:
            return
        self.deferred_lex = lexical.defer_index(self.engine)
        if self.embedder is None or not pgvector.available(self.engine):
            return
        dim = _vector_size(self.engine, self.embedder.model)
        if dim and pgvector.defer_index(self.engine, dim):
            self.deferred_dim = dim

    def finish(self) -> None:
        """Build the indexes this job dropped again (also after an error)."""
        if self.deferred_lex:
            log.info("bulk load: building the keyword index")
            lexical.build_index(self.engine)
            self.deferred_lex = False
        if self.deferred_dim:
            log.info("bulk load: building the HNSW index")
            pgvector.build_index(self.engine, self.deferred_dim)
            self.deferred_dim = 0

    def _report(self, result: store.IngestResult) -> None:
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)


def _vector_size(engine: Engine, model: str) -> int:
    """The size of the vectors `model` made here (0 when it made none)."""
    with Session(engine) as session:
        found = session.exec(select(ChunkVector.dim).where(ChunkVector.model == model)).first()
    return int(found or 0)
