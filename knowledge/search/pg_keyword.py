"""Keyword (BM25) retrieval answered by PostgreSQL over `knowledge.lexical`'s index.

The same ranking and confidence as the in-memory `KeywordRetriever` (two kinds, FAQ
questions with their own k1/b, an entry scoring as its best question, `confidence`
against the same references), but nothing is held in the process: idf and average
length come from the per-base term frequencies, and the database scores the candidates.
A document added by any process is searchable by every other at once, and a worker's
memory does not grow with the knowledge base.

Scoring is Okapi BM25 in SQL: for each candidate, the query's lexemes are picked out of
its `tsvector` (`setweight` + `ts_filter`, in C) and weighted with the query's idf.
PostgreSQL's own ``ts_rank_cd`` has no idf and ranks far worse (BQ R@5 0.131 against
0.253; `benchmarks/retrieval_eval.py --backend postgresql --pg-rank ts_rank_cd`).

Candidates, found by the GIN index: the documents holding one of the query's rarest
terms, rarest first, while their postings add up to at most `candidate_postings`; when
even the rarest term is more common than that, the documents holding two of the rarest
`PAIR_TERMS` (a term inside one already taken skipped, and no more than fit
`PAIR_POSTINGS`), at most `MAX_CANDIDATES` of them (which ones is then up to the index:
the price of a bounded query time). Every candidate is then scored with all the query's
terms. When every term fits (small bases, most FAQ queries) the ranking is exact;
otherwise a document holding only very common terms of the query can be missed. On the
dev sets that costs at most 0.001 R@5 (`benchmarks/README.md`); each candidate costs
about 10-60 µs of database time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from knowledge import lexical, synonym_table
from knowledge.base import Hit
from knowledge.search.bm25 import BM25Index
from knowledge.search.retrieval import (
    CHUNK_BM25,
    CHUNK_KEY,
    FAQ_BM25,
    FAQ_KEY,
    FAQ_SECTION,
    BM25Params,
    Key,
    Tokenizer,
    confidence,
)
from knowledge.text.tokenize import tokenize

# Postings (documents per term, summed) the candidate terms may have; see the docstring.
CANDIDATE_POSTINGS = 500
# When even the rarest term is over that budget: pairs of the rarest this many terms (the
# index reads every posting of each: with 5, a query of common words read 57,000 matches).
PAIR_TERMS = 4
# ... and of only as many of them as have this many postings together (the two rarest
# always): at 1M chunks the pairs of four common terms read up to 1.4M postings, 300 ms.
PAIR_POSTINGS = 30_000
# At most this many candidates are scored (in the order the index finds them): pairs of
# common terms can still match thousands of passages, at 20-60 µs each. 500 rank BQ and
# AFQMC as 1,000 did (benchmarks/README.md), in half the time.
MAX_CANDIDATES = 500


def no_seqscan(conn: Connection) -> None:
    """Keep this transaction's queries on the indexes.

    A candidate query has a LIMIT, and the planner, trusting its estimate of how many
    documents match, may then prefer reading the table until the limit is reached: a
    query whose matches are fewer than estimated read all of it (1.4 s at 100,000 chunks
    instead of 15 ms).
    """
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")


class _Stats:
    """One kind's BM25 statistics for one query: documents, average length, idf."""

    def __init__(self, params: BM25Params, n: int, total: int, df: dict[str, int]) -> None:
        self.params = params
        self.n = n
        self.avgdl = total / n if n else 0.0
        self.df = df
        self.idf = {t: BM25Index.idf_for(d, n) for t, d in df.items() if d > 0}

    def saturate(self, tf: float, length: float) -> float:
        k1, b = self.params.k1, self.params.b
        norm = 1.0 - b + b * (length / self.avgdl if self.avgdl else 0.0)
        return tf * (k1 + 1.0) / (tf + k1 * norm)

    def self_score(self, tokens: Sequence[str], doc_length: float | None = None) -> float:
        """`BM25Index.self_score` from these statistics."""
        counts = Counter(tokens)
        length = sum(counts.values()) if doc_length is None else doc_length
        unknown = BM25Index.idf_for(0, self.n)
        return sum(
            self.idf.get(term, unknown) * self.saturate(tf, length) for term, tf in counts.items()
        )


class PgKeywordRetriever:
    """BM25 search of knowledge bases `kb_ids` inside PostgreSQL; a `LexicalSearch`.

    Keys are ``(FAQ_KEY or CHUNK_KEY, chunk row id)``. Thread-safe: each call takes a
    connection from the engine's pool.
    """

    def __init__(
        self,
        engine: Engine,
        kb_ids: Sequence[int],
        *,
        faq_bm25: BM25Params = FAQ_BM25,
        chunk_bm25: BM25Params = CHUNK_BM25,
        tokenizer: Tokenizer = tokenize,
        candidate_postings: int = CANDIDATE_POSTINGS,
    ) -> None:
        lexical.ensure_engine(engine)
        self._engine = engine
        self._kb_ids = list(kb_ids)
        self._params = {FAQ_KEY: faq_bm25, CHUNK_KEY: chunk_bm25}
        self._tokenize = tokenizer
        self.candidate_postings = candidate_postings
        self.max_candidates = MAX_CANDIDATES

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT count(*) FROM knowledgechunk c JOIN document d ON d.id = c.document_id"
                    " WHERE d.kb_id = ANY(:kbs)"
                ),
                {"kbs": self._kb_ids},
            ).scalar_one()
        return int(found)

    def tokens(self, query: str) -> list[str]:
        """The query's tokens, with the operator's synonyms (`knowledge.synonym_table`)."""
        return synonym_table.expand(query, self._tokenize)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The `k` best hits for `query`, best first, each scored by `confidence`."""
        return self.hits(self.ranked(self.tokens(query), k))

    def _stats(self, conn: Connection, tokens: Sequence[str]) -> dict[int, _Stats]:
        terms = sorted({t for t in tokens if lexical.usable(t)})
        rows = conn.execute(
            text(
                f"SELECT kind, term, sum(df), sum(tokens) FROM {lexical.TERMS} "  # noqa: S608 - our table name
                "WHERE kb_id = ANY(:kbs) AND term = ANY(:terms) GROUP BY kind, term"
            ),
            {"kbs": self._kb_ids, "terms": [*terms, ""]},
        ).all()
        df: dict[int, dict[str, int]] = {FAQ_KEY: {}, CHUNK_KEY: {}}
        sizes: dict[int, tuple[int, int]] = {}
        for kind, term, n, total in rows:
            if term == "":
                sizes[int(kind)] = (int(n), int(total))
            else:
                df[int(kind)][str(term)] = int(n)
        return {
            kind: _Stats(self._params[kind], n, total, df[kind])
            for kind, (n, total) in sizes.items()
            if n > 0
        }

    def _reference(self, stats: _Stats, kind: int, tokens: Sequence[str]) -> float:
        # The same references as KeywordRetriever: the query itself for an FAQ question, a
        # passage of average length holding the query for a passage.
        if kind == FAQ_KEY:
            return stats.self_score(tokens)
        return stats.self_score(tokens, doc_length=stats.avgdl)

    def _score(
        self,
        conn: Connection,
        stats: _Stats,
        kind: int,
        where: str,
        params: dict[str, object],
        limit: int | None,
    ) -> list[tuple[int, float]]:
        terms = sorted(stats.idf)
        if not terms:
            return []
        k1, b = stats.params.k1, stats.params.b
        # setweight marks the query's lexemes and ts_filter keeps only them (both in C), so
        # just those are unnested, once per candidate (in the select list: no subplan run
        # per row), and scored per document, then an entry scores as its best question.
        sql = (
            "SELECT chunk_id, max(score) AS best FROM ("  # noqa: S608 - our table, fixed filters
            " SELECT chunk_id, sum("
            " (CAST(:idfs AS float8[]))[array_position(CAST(:terms AS text[]), (u).lexeme)]"
            " * (array_length((u).positions, 1) * :k1p1"
            " / (array_length((u).positions, 1) + :k1 * (:one_b + :b * (dl / :avgdl)))))"
            " AS score FROM ("
            " SELECT l.chunk_id, l.variant, l.dl,"
            " unnest(ts_filter(setweight(l.terms, 'A', CAST(:terms AS text[])), '{a}')) AS u"
            f" FROM (SELECT * FROM {lexical.LEX} l"
            f" WHERE {where} AND l.kb_id = ANY(:kbs) AND l.kind = :kind LIMIT :cap) l) x"
            " GROUP BY chunk_id, variant) s"
            " GROUP BY chunk_id HAVING max(score) > 0"
            " ORDER BY best DESC, chunk_id" + (" LIMIT :limit" if limit is not None else "")
        )
        rows = conn.execute(
            text(sql),
            {
                **params,
                "k1p1": k1 + 1.0,
                "k1": k1,
                "one_b": 1.0 - b,
                "b": b,
                "avgdl": stats.avgdl or 1.0,
                "terms": terms,
                "idfs": [stats.idf[t] for t in terms],
                "kbs": self._kb_ids,
                "kind": kind,
                "limit": limit,
                "cap": self.max_candidates if limit is not None else None,
            },
        ).all()
        return [(int(chunk_id), float(score)) for chunk_id, score in rows]

    def candidate_query(self, stats: _Stats) -> str:
        """The tsquery that finds the candidates (see the module docstring); "" for none."""
        ordered = sorted(stats.idf, key=lambda t: (stats.df[t], t))
        chosen: list[str] = []
        total = 0
        for term in ordered:
            total += stats.df[term]
            if total > self.candidate_postings:
                break
            chosen.append(term)
        if chosen or len(ordered) < 2:
            return " | ".join(lexical.quote(t) for t in chosen or ordered)
        # Even the rarest term is common: documents holding two of the rarest few.
        rare = [lexical.quote(t) for t in self.pair_terms(stats, ordered)]
        if len(rare) < 2:
            return rare[0]
        return " | ".join(f"({a} & {b})" for i, a in enumerate(rare) for b in rare[i + 1 :])

    @staticmethod
    def pair_terms(stats: _Stats, ordered: Sequence[str]) -> list[str]:
        """The terms whose pairs find the candidates: the rarest, skipping one inside a
        term already taken (问题 then 题: every passage with 问题 holds 题, so the pair
        narrows nothing), while their postings fit `PAIR_POSTINGS`."""
        taken: list[str] = []
        postings = 0
        for term in ordered:
            if len(taken) == PAIR_TERMS:
                break
            if any(term in longer for longer in taken):
                continue
            if len(taken) >= 2 and postings + stats.df[term] > PAIR_POSTINGS:
                break
            taken.append(term)
            postings += stats.df[term]
        return taken

    def ranked(self, tokens: Sequence[str], k: int) -> list[tuple[Key, float]]:
        """The `k` best entries for query `tokens` as (key, confidence), best first."""
        if k <= 0 or not tokens:
            return []
        scored: list[tuple[float, int, int, Key]] = []
        with self._engine.connect() as conn:
            no_seqscan(conn)
            for kind, stats in sorted(self._stats(conn, tokens).items()):
                query = self.candidate_query(stats)
                if not query:
                    continue
                reference = self._reference(stats, kind, tokens)
                found = self._score(
                    conn, stats, kind, "l.terms @@ CAST(:tsq AS tsquery)", {"tsq": query}, k
                )
                scored.extend(
                    (confidence(score, reference), kind, rank, (kind, chunk_id))
                    for rank, (chunk_id, score) in enumerate(found)
                )
            conn.rollback()
        # Best confidence first; on a tie the FAQ entry, which carries a ready answer.
        scored.sort(key=lambda item: (-item[0], item[1], item[2]))
        return [(key, score) for score, _, _, key in scored[:k]]

    def confidence_of(self, tokens: Sequence[str], key: Key) -> float:
        """The confidence `ranked` gives entry `key` for query `tokens` (0 if no match)."""
        return self.confidences(tokens, [key])[0]

    def confidences(self, tokens: Sequence[str], keys: Sequence[Key]) -> list[float]:
        """`confidence_of` for several keys, one query per kind."""
        found = dict.fromkeys(keys, 0.0)
        if not tokens or not keys:
            return [0.0] * len(keys)
        with self._engine.connect() as conn:
            for kind, stats in self._stats(conn, tokens).items():
                ids = sorted({number for kk, number in keys if kk == kind})
                if not ids:
                    continue
                reference = self._reference(stats, kind, tokens)
                scores = self._score(
                    conn, stats, kind, "l.chunk_id = ANY(:ids)", {"ids": ids}, None
                )
                for chunk_id, score in scores:
                    found[(kind, chunk_id)] = confidence(score, reference)
            conn.rollback()
        return [found[key] for key in keys]

    def hits(self, scored: Sequence[tuple[Key, float]]) -> list[Hit]:
        """The `Hit` of each (key, confidence), in order (keys since deleted are left out)."""
        if not scored:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT c.id, c.text, c.section, c.answer, c.similar, d.source"
                    " FROM knowledgechunk c"
                    " JOIN document d ON d.id = c.document_id WHERE c.id = ANY(:ids)"
                ),
                {"ids": [number for (_, number), _ in scored]},
            ).all()
        by_id = {int(row[0]): row for row in rows}
        found = []
        for (kind, number), score in scored:
            row = by_id.get(number)
            if row is None:
                continue
            _, body, section, answer, similar, source = row
            if kind == FAQ_KEY:
                asked = tuple(similar.split("\n")) if similar else ()
                found.append(Hit(body, source, FAQ_SECTION, score, answer or "", asked))
            else:
                found.append(Hit(body, source, section, score))
        return found

    def hit(self, key: Key, score: float) -> Hit:
        """The `Hit` of entry `key` with confidence `score`."""
        found = self.hits([(key, score)])
        if not found:
            raise KeyError(key)
        return found[0]

    def dense_key(self, key: Key) -> int:
        """A key as a number: twice the chunk id, plus one for a passage."""
        kind, number = key
        return 2 * number + (1 if kind == CHUNK_KEY else 0)

    def keyword_key(self, dense_key: int) -> Key:
        return (CHUNK_KEY if dense_key % 2 else FAQ_KEY, dense_key // 2)
