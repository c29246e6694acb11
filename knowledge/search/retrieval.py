"""Keyword (BM25) retrieval over FAQ entries and document chunks.

Two indexes, because the two kinds of text differ in shape: every FAQ question (standard
and similar) is a short document of its own in one, chunks (heading trail + text) are
documents in the other; each keeps its own idf and length statistics. An FAQ entry's
score is its best-matching question's.

Confidence. `Hit.score` is ``min(1, bm25(query, doc) / bm25(query, reference))``, where
the reference is the best a document of that kind could plausibly score (terms the index
has never seen count with the largest idf):

- FAQ question: a question identical to the query. 1 for a question that repeats the
  query; it falls with every query term the question lacks, weighted by how telling the
  term is, and does not grow with the query's length the way raw BM25 does, so one
  threshold works across queries. On the retrieval dev sets
  (`benchmarks/retrieval_eval.py --confidence`), telling the top hit of an in-domain
  query from the top hit of a query of the other set, its AUC is 0.94 on BQ and 0.77 on
  AFQMC (0.92 and 0.80 before synonyms and FAQ b = 0.5), against 0.77 and 0.73 for raw
  BM25; an idf-weighted share of the query terms
  found scores the same (0.93 / 0.78), dividing by the larger of the two self-scores
  worse (0.89 / 0.75), an average-length reference worse (0.91 / 0.72). None of them
  tells a right top hit from a wrong paraphrase (AUC about 0.5): that needs the later
  semantic retriever.
- Passage: a passage of the index's average length that holds every query term. Measured
  against the query itself, BM25's length normalisation caps a fully relevant passage
  near 0.5, and the agent's single threshold (`BOT_FAQ_MIN_SCORE`, 0.35) dropped most
  relevant passages. On the sample knowledge base, 20 hand-written questions answered by
  a manual or policy passage against 18 off-topic ones: at 0.35 this keeps 14 of the 20
  and 1 of the 18 (query-identical reference: 5 and 0; AUC 0.97 for both).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from knowledge import synonym_table
from knowledge.base import Hit
from knowledge.loaders import (
    DEFAULT_MAX_CHARS,
    Chunk,
    FaqEntry,
    LoadError,
    LoadResult,
    load_folder,
)
from knowledge.search.bm25 import BM25Index
from knowledge.text.tokenize import tokenize

if TYPE_CHECKING:
    from sqlmodel import Session

log = logging.getLogger(__name__)

FAQ_SECTION = "FAQ"
FAQ_KEY, CHUNK_KEY = 0, 1
Key = tuple[int, int]  # (FAQ_KEY or CHUNK_KEY, entry or chunk number)

Tokenizer = Callable[[str], list[str]]


@dataclass(frozen=True)
class BM25Params:
    """BM25 saturation `k1` and length normalisation `b` of one index."""

    k1: float
    b: float


# FAQ questions are short and similar in length, so a longer one is not padded with
# noise the way a long passage is: less length normalisation. On the dev sets
# (`benchmarks/retrieval_eval.py --b`) b = 0.5 gains 0.008 R@5 on AFQMC and costs 0.003
# on BQ against 0.75; lower b helps AFQMC more and hurts BQ more (0.4: +0.011 / -0.008).
FAQ_BM25 = BM25Params(k1=1.5, b=0.5)
# Passages keep the textbook values the passage confidence was calibrated with.
CHUNK_BM25 = BM25Params(k1=1.5, b=0.75)


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where an index built from the store came from: its bases, each indexed document's
    content hash, and the document and row of each FAQ entry and chunk (by number)."""

    kb_names: tuple[str, ...]
    stamps: dict[int, str]
    faq_docs: tuple[int, ...]
    chunk_docs: tuple[int, ...]
    faq_ids: tuple[int, ...]  # the chunk row of each FAQ entry
    chunk_ids: tuple[int, ...]  # the chunk row of each passage


class LexicalSearch(Protocol):
    """What fusion needs of a keyword retriever: in memory (`KeywordRetriever`) or in
    PostgreSQL (`knowledge.search.pg_keyword.PgKeywordRetriever`)."""

    def __len__(self) -> int: ...

    def search(self, query: str, k: int = 5) -> list[Hit]: ...

    def tokens(self, query: str) -> list[str]: ...

    def ranked(self, tokens: Sequence[str], k: int) -> list[tuple[Key, float]]: ...

    def confidence_of(self, tokens: Sequence[str], key: Key) -> float: ...

    def confidences(self, tokens: Sequence[str], keys: Sequence[Key]) -> list[float]: ...

    def hits(self, scored: Sequence[tuple[Key, float]]) -> list[Hit]: ...

    def dense_key(self, key: Key) -> int: ...

    def keyword_key(self, dense_key: int) -> Key: ...


def confidence(score: float, self_score: float) -> float:
    """BM25 `score` as a share of the query's `self_score`, clamped to [0, 1]."""
    if score <= 0.0 or self_score <= 0.0:
        return 0.0
    return min(1.0, score / self_score)


class KeywordRetriever:
    """BM25 search over FAQ questions and document chunks; a `Retriever`.

    Built once and read-only afterwards, so `search` is safe to call from many threads.
    """

    def __init__(
        self,
        chunks: Iterable[Chunk] = (),
        faqs: Iterable[FaqEntry] = (),
        *,
        faq_bm25: BM25Params = FAQ_BM25,
        chunk_bm25: BM25Params = CHUNK_BM25,
        tokenizer: Tokenizer = tokenize,
        failed: Iterable[LoadError] = (),
    ) -> None:
        self.chunks: tuple[Chunk, ...] = tuple(chunks)
        self.faqs: tuple[FaqEntry, ...] = tuple(faqs)
        self.failed: tuple[LoadError, ...] = tuple(failed)
        self._tokenize = tokenizer
        # Set when built from the store (`from_store`): where each entry came from.
        self.origin: _Origin | None = None
        # FAQ index ids are (entry, question number); chunk index ids are chunk positions.
        self._faq_index: BM25Index[tuple[int, int]] = BM25Index(faq_bm25.k1, faq_bm25.b)
        self._chunk_index: BM25Index[int] = BM25Index(chunk_bm25.k1, chunk_bm25.b)
        self._max_questions = 1
        for i, entry in enumerate(self.faqs):
            questions = entry.questions
            self._max_questions = max(self._max_questions, len(questions))
            for j, question in enumerate(questions):
                self._faq_index.add((i, j), tokenizer(question))
        for i, chunk in enumerate(self.chunks):
            self._chunk_index.add(i, tokenizer(chunk.context_text))
        self._faq_index.build()
        self._chunk_index.build()

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        faq_bm25: BM25Params = FAQ_BM25,
        chunk_bm25: BM25Params = CHUNK_BM25,
        tokenizer: Tokenizer = tokenize,
    ) -> KeywordRetriever:
        """Load a knowledge folder (see `knowledge.loaders`) and index it.

        Files that fail to load are logged and listed in `failed`; the rest are indexed.
        """
        loaded = load_folder(path, max_chars=max_chars)
        return cls._indexed(loaded, faq_bm25, chunk_bm25, tokenizer)

    @classmethod
    def from_store(
        cls,
        session: Session,
        kb_names: Sequence[str],
        *,
        faq_bm25: BM25Params = FAQ_BM25,
        chunk_bm25: BM25Params = CHUNK_BM25,
        tokenizer: Tokenizer = tokenize,
    ) -> KeywordRetriever:
        """Index the chunks and FAQ entries stored in knowledge bases `kb_names`.

        The result remembers which document each entry came from, so `refreshed` can
        follow later changes document by document.
        """
        from knowledge import store  # the database only for these constructors

        stamps = store.document_stamps(session, kb_names)
        stored = store.load_documents(session, kb_names)
        found = cls._indexed(stored.loaded, faq_bm25, chunk_bm25, tokenizer)
        found.origin = _Origin(
            tuple(kb_names),
            stamps,
            tuple(stored.faq_docs),
            tuple(stored.chunk_docs),
            tuple(stored.faq_ids),
            tuple(stored.chunk_ids),
        )
        return found

    def refreshed(self, session: Session) -> KeywordRetriever | None:
        """This index brought up to date with the store, touching only changed documents.

        Documents whose content changed or that were removed lose their entries; new or
        changed ones are loaded and tokenized; everything else keeps its postings
        (`BM25Index.updated`). Returns self when no document changed, None when this
        index was not built from the store (build a new one then).
        """
        from knowledge import store

        origin = self.origin
        if origin is None:
            return None
        stamps = store.document_stamps(session, origin.kb_names)
        gone = {d for d, digest in origin.stamps.items() if stamps.get(d) != digest}
        fresh = [d for d, digest in stamps.items() if origin.stamps.get(d) != digest]
        if not gone and not fresh:
            return self
        stored = store.load_documents(session, origin.kb_names, fresh)
        found = self.updated(
            {i for i, d in enumerate(origin.faq_docs) if d in gone},
            {i for i, d in enumerate(origin.chunk_docs) if d in gone},
            stored.loaded.chunks,
            stored.loaded.faqs,
        )

        def kept(values: tuple[int, ...], docs: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(v for v, d in zip(values, docs, strict=True) if d not in gone)

        found.origin = _Origin(
            origin.kb_names,
            stamps,
            kept(origin.faq_docs, origin.faq_docs) + tuple(stored.faq_docs),
            kept(origin.chunk_docs, origin.chunk_docs) + tuple(stored.chunk_docs),
            kept(origin.faq_ids, origin.faq_docs) + tuple(stored.faq_ids),
            kept(origin.chunk_ids, origin.chunk_docs) + tuple(stored.chunk_ids),
        )
        log.info(
            "keyword index updated: %d documents out, %d in, %d entries",
            len(gone),
            len(fresh),
            len(found),
        )
        return found

    def updated(
        self,
        drop_faqs: Collection[int],
        drop_chunks: Collection[int],
        chunks: Sequence[Chunk],
        faqs: Sequence[FaqEntry],
    ) -> KeywordRetriever:
        """A new index without FAQ entries and chunks numbered `drop_*`, plus `chunks` and
        `faqs` (numbered after the kept ones); only those are tokenized. This one stays."""
        kept_faqs = [i for i in range(len(self.faqs)) if i not in drop_faqs]
        kept_chunks = [i for i in range(len(self.chunks)) if i not in drop_chunks]
        found = object.__new__(type(self))
        found.chunks = tuple(self.chunks[i] for i in kept_chunks) + tuple(chunks)
        found.faqs = tuple(self.faqs[i] for i in kept_faqs) + tuple(faqs)
        found.failed = ()
        found._tokenize = self._tokenize
        found.origin = None
        keep_faq = {
            (old, j): (new, j)
            for new, old in enumerate(kept_faqs)
            for j in range(len(self.faqs[old].questions))
        }
        first = len(kept_faqs)
        found._faq_index = self._faq_index.updated(
            keep_faq,
            (
                ((first + i, j), self._tokenize(question))
                for i, entry in enumerate(faqs)
                for j, question in enumerate(entry.questions)
            ),
        )
        first = len(kept_chunks)
        found._chunk_index = self._chunk_index.updated(
            {old: new for new, old in enumerate(kept_chunks)},
            ((first + i, self._tokenize(chunk.context_text)) for i, chunk in enumerate(chunks)),
        )
        found._max_questions = max((len(e.questions) for e in found.faqs), default=1)
        return found

    @classmethod
    def _indexed(
        cls,
        loaded: LoadResult,
        faq_bm25: BM25Params,
        chunk_bm25: BM25Params,
        tokenizer: Tokenizer,
    ) -> KeywordRetriever:
        return cls(
            loaded.chunks,
            loaded.faqs,
            faq_bm25=faq_bm25,
            chunk_bm25=chunk_bm25,
            tokenizer=tokenizer,
            failed=loaded.failed,
        )

    def __len__(self) -> int:
        return len(self.chunks) + len(self.faqs)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The `k` best hits for `query`, best first, each scored by `confidence`."""
        return [self.hit(key, score) for key, score in self.ranked(self.tokens(query), k)]

    def tokens(self, query: str) -> list[str]:
        """The query's tokens, with the operator's synonyms (`knowledge.synonym_table`)."""
        return synonym_table.expand(query, self._tokenize)

    def ranked(self, tokens: Sequence[str], k: int) -> list[tuple[Key, float]]:
        """The `k` best entries for query `tokens` as (key, confidence), best first.

        A key is ``(FAQ_KEY, entry number)`` or ``(CHUNK_KEY, chunk number)``.
        """
        if k <= 0 or not tokens:
            return []
        scored: list[tuple[float, int, Key]] = []
        if self.faqs:
            self_score = self._faq_index.self_score(tokens)
            seen: set[int] = set()
            # k entries are among the top k * (most questions per entry) questions.
            for (entry_no, _), score in self._faq_index.top_k(tokens, k * self._max_questions):
                if entry_no in seen:
                    continue
                seen.add(entry_no)
                scored.append((confidence(score, self_score), 0, (FAQ_KEY, entry_no)))
                if len(seen) == k:
                    break
        if self.chunks:
            # A passage is longer than the query, so it is measured against a passage of
            # average length holding the whole query, not against the query itself.
            self_score = self._chunk_index.self_score(tokens, doc_length=self._chunk_index.avgdl)
            for chunk_no, score in self._chunk_index.top_k(tokens, k):
                scored.append((confidence(score, self_score), 1, (CHUNK_KEY, chunk_no)))
        # Best confidence first; on a tie the FAQ entry, which carries a ready answer.
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [(key, score) for score, _, key in scored[:k]]

    def confidence_of(self, tokens: Sequence[str], key: Key) -> float:
        """The confidence `ranked` gives entry `key` for query `tokens` (0 if no match)."""
        return self.confidences(tokens, [key])[0]

    def confidences(self, tokens: Sequence[str], keys: Sequence[Key]) -> list[float]:
        """`confidence_of` for several keys, scored together (one pass per query term)."""
        if not tokens or not keys:
            return [0.0] * len(keys)
        found = [0.0] * len(keys)
        faq_at = [i for i, (kind, _) in enumerate(keys) if kind == FAQ_KEY]
        chunk_at = [i for i, (kind, _) in enumerate(keys) if kind != FAQ_KEY]
        if faq_at:
            self_score = self._faq_index.self_score(tokens)
            questions = [
                (i, (keys[i][1], j))
                for i in faq_at
                for j in range(len(self.faqs[keys[i][1]].questions))
            ]
            scores = self._faq_index.scores(tokens, [q for _, q in questions])
            best: dict[int, float] = {}
            for (i, _), score in zip(questions, scores, strict=True):
                best[i] = max(best.get(i, 0.0), score)
            for i, score in best.items():
                found[i] = confidence(score, self_score)
        if chunk_at:
            avgdl = self._chunk_index.avgdl
            self_score = self._chunk_index.self_score(tokens, doc_length=avgdl)
            scores = self._chunk_index.scores(tokens, [keys[i][1] for i in chunk_at])
            for i, score in zip(chunk_at, scores, strict=True):
                found[i] = confidence(score, self_score)
        return found

    def hit(self, key: Key, score: float) -> Hit:
        """The `Hit` of entry `key` with confidence `score`."""
        kind, number = key
        if kind == FAQ_KEY:
            entry = self.faqs[number]
            return Hit(
                text=entry.question,
                source=entry.source,
                section=FAQ_SECTION,
                score=score,
                answer=entry.answer,
                questions=entry.similar,
            )
        chunk = self.chunks[number]
        return Hit(text=chunk.text, source=chunk.source, section=chunk.section, score=score)

    def hits(self, scored: Sequence[tuple[Key, float]]) -> list[Hit]:
        """`hit` of each (key, score), in order."""
        return [self.hit(key, score) for key, score in scored]

    def dense_key(self, key: Key) -> int:
        """The number of entry `key` in a `VectorSearch`: FAQ entries first, then chunks."""
        kind, number = key
        return number if kind == FAQ_KEY else len(self.faqs) + number

    def keyword_key(self, dense_key: int) -> Key:
        """The entry of a `VectorSearch` number (`dense_key` reversed)."""
        if dense_key < len(self.faqs):
            return (FAQ_KEY, dense_key)
        return (CHUNK_KEY, dense_key - len(self.faqs))

    def faq_confidence(self, query: str, entry_no: int) -> float:
        """The confidence `search` would give FAQ entry `self.faqs[entry_no]` for `query`."""
        return self.confidence_of(self.tokens(query), (FAQ_KEY, entry_no))
