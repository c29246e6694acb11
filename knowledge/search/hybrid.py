"""Keyword (BM25) and dense (embedding) retrieval fused into one ranking; a `Retriever`.

Candidates are the top `candidates` entries of each ranking. Each candidate gets both of
its exact scores, whichever list it came from: the keyword confidence
(`KeywordRetriever.confidence_of`) and the dense confidence
``clamp((cosine - sim_floor) / (1 - sim_floor))``. Then:

- ``weighted``: order by ``w * keyword + (1 - w) * dense``;
- ``rrf``: order by reciprocal rank fusion, ``sum 1 / (60 + rank)`` over the two lists.

Either way `Hit.score` is the weighted blend, a confidence in [0, 1]: 1 only for an entry
both lexically identical to the query and at cosine 1, so `faq_direct_score` keeps its
meaning (a word-for-word FAQ question still answers directly). `benchmarks/retrieval_eval.py`
measures both rules.

The dense side is a `VectorSearch`: numpy over the stored vectors (`DenseIndex`), or
PostgreSQL itself when it has pgvector (`knowledge.pgvector`). When the query cannot be
embedded in time, the keyword ranking is returned as it is, the failure is logged and
counted (`bot_kb_dense_fallback_total`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Counter
from sqlalchemy.engine import Engine

from knowledge.base import Hit
from knowledge.embedding import Embedder, EmbeddingError
from knowledge.search.dense import DenseIndex, VectorSearch
from knowledge.search.pg_keyword import PgKeywordRetriever
from knowledge.search.retrieval import (
    CHUNK_KEY,
    FAQ_KEY,
    Key,
    KeywordRetriever,
    LexicalSearch,
    Tokenizer,
)
from knowledge.text.tokenize import tokenize

if TYPE_CHECKING:
    from sqlmodel import Session

log = logging.getLogger(__name__)

DENSE_FALLBACKS = Counter(
    "bot_kb_dense_fallback_total",
    "Knowledge searches answered by keywords only because the query was not embedded",
    ["reason"],
)

RRF_K = 60
WEIGHTED, RRF = "weighted", "rrf"


class HybridRetriever:
    """Keyword + dense search over the same entries as `keyword`; thread-safe once built."""

    def __init__(
        self,
        keyword: LexicalSearch,
        dense: VectorSearch,
        embedder: Embedder,
        *,
        fusion: str = WEIGHTED,
        weight: float = 0.5,
        sim_floor: float = 0.3,
        candidates: int = 50,
    ) -> None:
        if fusion not in (WEIGHTED, RRF):
            raise ValueError(f"fusion must be {WEIGHTED!r} or {RRF!r}, not {fusion!r}")
        if not 0.0 <= weight <= 1.0 or not -1.0 <= sim_floor < 1.0:
            raise ValueError("weight must be in [0, 1] and sim_floor in [-1, 1)")
        if isinstance(keyword, KeywordRetriever) and dense.n_keys != len(keyword):
            raise ValueError("the dense index must have one key per FAQ entry and chunk")
        self.keyword = keyword
        self.dense = dense
        self.embedder = embedder
        self.fusion = fusion
        self.weight = weight
        self.sim_floor = sim_floor
        self.candidates = candidates

    @classmethod
    def from_store(
        cls,
        session: Session,
        kb_names: Sequence[str],
        embedder: Embedder,
        *,
        tokenizer: Tokenizer = tokenize,
        fusion: str = WEIGHTED,
        weight: float = 0.5,
        sim_floor: float = 0.3,
    ) -> HybridRetriever:
        """Index the entries and the `embedder.model` vectors stored for `kb_names`."""
        from knowledge import lexical, pgvector, store

        engine = session.get_bind()
        if lexical.used(engine) and isinstance(engine, Engine):
            kb_ids = store.kb_ids(session, kb_names)
            on_pg = PgKeywordRetriever(engine, kb_ids, tokenizer=tokenizer)
            dense: VectorSearch
            if pgvector.available(engine):
                # Everything in the database: nothing is loaded into this process.
                dense = pgvector.PgVectorSearch(engine, kb_ids, embedder.model)
            else:
                dense = _memory_vectors(session, kb_names, embedder.model, on_pg)
            return cls(on_pg, dense, embedder, fusion=fusion, weight=weight, sim_floor=sim_floor)
        keyword = KeywordRetriever.from_store(session, kb_names, tokenizer=tokenizer)
        dense = _memory_index(session, keyword, embedder.model)
        return cls(keyword, dense, embedder, fusion=fusion, weight=weight, sim_floor=sim_floor)

    def refreshed(self, session: Session) -> HybridRetriever | None:
        """In memory: the keyword index updated document by document
        (`KeywordRetriever.refreshed`) and the stored vectors read again (none embedded
        again). None otherwise: on PostgreSQL a new retriever costs nothing."""
        if not isinstance(self.keyword, KeywordRetriever):
            return None
        keyword = self.keyword.refreshed(session)
        if keyword is None:
            return None
        return type(self)(
            keyword,
            _memory_index(session, keyword, self.embedder.model),
            self.embedder,
            fusion=self.fusion,
            weight=self.weight,
            sim_floor=self.sim_floor,
            candidates=self.candidates,
        )

    def __len__(self) -> int:
        return len(self.keyword)

    def dense_key(self, key: Key) -> int:
        return self.keyword.dense_key(key)

    def keyword_key(self, dense_key: int) -> Key:
        return self.keyword.keyword_key(dense_key)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The `k` best hits for `query`, best first; keyword-only if embedding fails."""
        if k <= 0:
            return []
        try:
            vector = self.embedder.embed([query], query=True)[0]
        except EmbeddingError as exc:
            DENSE_FALLBACKS.labels(reason="embedding").inc()
            log.warning("query not embedded, keyword search only: %s", exc)
            return self.keyword.search(query, k)
        return self.keyword.hits(self.fuse(query, vector, k))

    def blend(
        self,
        tokens: Sequence[str],
        sims: Mapping[int, float],
        key: Key,
        lexical: float | None = None,
    ) -> float:
        """Entry `key`'s confidence: the weighted keyword and dense confidences.

        `sims` are cosines by dense key (`VectorSearch.search`; a key without a vector
        counts as 0); `lexical`, when known, saves recomputing the keyword confidence.
        """
        if lexical is None:
            lexical = self.keyword.confidence_of(tokens, key)
        cos = sims.get(self.dense_key(key), 0.0)
        dense = min(1.0, max(0.0, (cos - self.sim_floor) / (1.0 - self.sim_floor)))
        return self.weight * lexical + (1.0 - self.weight) * dense

    def fuse(self, query: str, vector: np.ndarray, k: int) -> list[tuple[Key, float]]:
        """The fused top `k` (key, confidence) for `query` whose embedding is `vector`."""
        tokens = self.keyword.tokens(query)
        n = max(k, self.candidates)
        if isinstance(self.keyword, PgKeywordRetriever):
            lexical, top, sims, lexical_conf = self._both_in_database(tokens, vector, n)
            dense_top = [self.keyword_key(d) for d in top]
            keys = list(dict.fromkeys([key for key, _ in lexical] + dense_top))
        else:
            lexical = self.keyword.ranked(tokens, n)
            top, sims = self.dense.search(vector, n, [self.dense_key(key) for key, _ in lexical])
            dense_top = [self.keyword_key(d) for d in top]
            lexical_conf = dict(lexical)
            keys = list(dict.fromkeys([key for key, _ in lexical] + dense_top))
            missing = [key for key in keys if key not in lexical_conf]
            lexical_conf.update(
                zip(missing, self.keyword.confidences(tokens, missing), strict=True)
            )
        blended = {key: self.blend(tokens, sims, key, lexical_conf[key]) for key in keys}
        if self.fusion == RRF:
            rrf = dict.fromkeys(keys, 0.0)
            for ranking in ([key for key, _ in lexical], dense_top):
                for rank, key in enumerate(ranking, 1):
                    rrf[key] += 1.0 / (RRF_K + rank)
            order = sorted(keys, key=lambda key: (-rrf[key], -blended[key], key))
        else:
            order = sorted(keys, key=lambda key: (-blended[key], key))
        return [(key, blended[key]) for key in order[:k]]

    def _both_in_database(
        self, tokens: Sequence[str], vector: np.ndarray, n: int
    ) -> tuple[list[tuple[Key, float]], list[int], dict[int, float], dict[Key, float]]:
        """`fuse`'s four lookups when keyword search runs in the database.

        The two rankings are asked at once, then the scores each lacks (the cosines of the
        keyword-only candidates, the keyword confidences of the dense-only ones) at once:
        each pair costs the slower of its two queries, not their sum.
        """
        dense_top = _pool().submit(self.dense.search, vector, n)
        lexical = self.keyword.ranked(tokens, n)
        top, sims = dense_top.result()
        lexical_conf = dict(lexical)
        no_cosine = [d for d in (self.dense_key(key) for key, _ in lexical) if d not in sims]
        dense_keys = dict.fromkeys(self.keyword_key(d) for d in top)
        no_keyword = [key for key in dense_keys if key not in lexical_conf]
        cosines = _pool().submit(self.dense.search, vector, 0, no_cosine) if no_cosine else None
        if no_keyword:
            found = self.keyword.confidences(tokens, no_keyword)
            lexical_conf.update(zip(no_keyword, found, strict=True))
        if cosines is not None:
            sims = {**sims, **cosines.result()[1]}
        return lexical, top, sims, lexical_conf


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The threads that ask the database for dense results beside the keyword query."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kb-dense")
        return _executor


def _memory_index(session: Session, keyword: KeywordRetriever, model: str) -> DenseIndex:
    """The stored `model` vectors of `keyword`'s entries (built from the store), in memory."""
    from knowledge import vectors

    origin = keyword.origin
    if origin is None:  # pragma: no cover - from_store always sets it
        raise ValueError("the keyword index was not built from the store")
    stored = vectors.load(session, origin.kb_names, model)
    n_keys = len(keyword)
    chunk_keys: dict[tuple[int, int], int] = {}
    for key, (chunk_id, questions) in enumerate(
        [(i, len(e.questions)) for i, e in zip(origin.faq_ids, keyword.faqs, strict=True)]
        + [(i, 1) for i in origin.chunk_ids]
    ):
        for variant in range(questions):
            if (chunk_id, variant) in stored.rows:
                chunk_keys[(chunk_id, variant)] = key
    covered = len(set(chunk_keys.values()))
    if covered < n_keys:
        log.warning(
            "knowledge index: %d of %d entries have no %s vector (run `bot kb reindex`)",
            n_keys - covered,
            n_keys,
            model,
        )
    matrix = stored.select(list(chunk_keys))  # one copy, no per-vector arrays
    return DenseIndex(n_keys, list(chunk_keys.values()), matrix)


def _memory_vectors(
    session: Session, kb_names: Sequence[str], model: str, keyword: PgKeywordRetriever
) -> DenseIndex:
    """PostgreSQL without pgvector: the stored vectors in memory, keyed as `keyword` keys."""
    from sqlmodel import col, select

    from knowledge import vectors
    from knowledge.models import PASSAGE, KnowledgeChunk

    stored = vectors.load(session, kb_names, model)
    ids = sorted({chunk_id for chunk_id, _ in stored.rows})
    passages: set[int] = set()
    for start in range(0, len(ids), 10_000):
        query = select(KnowledgeChunk.id).where(
            col(KnowledgeChunk.id).in_(ids[start : start + 10_000]),
            KnowledgeChunk.kind == PASSAGE,
        )
        passages.update(i for i in session.exec(query) if i is not None)
    rows = list(stored.rows)
    keys = [keyword.dense_key((CHUNK_KEY if c in passages else FAQ_KEY, c)) for c, _ in rows]
    n_keys = 2 * (ids[-1] + 1) if ids else 0
    return DenseIndex(n_keys, keys, stored.select(rows))


def build(
    session: Session,
    kb_names: Sequence[str],
    embedder: Embedder | None = None,
    *,
    fusion: str = WEIGHTED,
    weight: float = 0.5,
    sim_floor: float = 0.3,
) -> KeywordRetriever | PgKeywordRetriever | HybridRetriever:
    """The retriever for `kb_names`: hybrid with an `embedder`, else keyword only.

    On PostgreSQL keyword search runs in the database (`PgKeywordRetriever`), and so does
    dense search when it has pgvector; SQLite (and PostgreSQL without pgvector, for the
    dense side) builds the in-memory indexes.
    """
    if embedder is None:
        from knowledge import lexical, store

        engine = session.get_bind()
        if lexical.used(engine) and isinstance(engine, Engine):
            return PgKeywordRetriever(engine, store.kb_ids(session, kb_names))
        return KeywordRetriever.from_store(session, kb_names)
    return HybridRetriever.from_store(
        session, kb_names, embedder, fusion=fusion, weight=weight, sim_floor=sim_floor
    )
