"""An in-memory Okapi BM25 index over pre-tokenized documents.

Scores use Lucene's non-negative idf, ``ln(1 + (N - df + 0.5) / (df + 0.5))``, and the
usual term weight ``idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``. Each
distinct query term counts once. `build` precomputes that weight for every posting (and
keeps a forward copy per document), so a query walks only the postings of its own terms,
and skips the long postings of common terms once they can no longer change the top k.

Typical use: `add` every document, `build` once, then call `top_k` from any number of
threads; a built index is never mutated.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class BM25Index(Generic[K]):
    """BM25 over documents identified by `doc_id` (any hashable)."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = k1
        self.b = b
        self._ids: list[K] = []
        self._term_freqs: list[Counter[str]] = []
        self._lengths: list[int] = []
        # Filled by build(): term -> (doc positions, weights), the same weights per
        # document (the forward index), each term's largest weight, and idf.
        self._postings: dict[str, tuple[list[int], list[float]]] = {}
        self._forward: list[dict[str, float]] = []
        self._positions: dict[K, int] = {}
        self._max_weight: dict[str, float] = {}
        self._idf: dict[str, float] = {}
        self._avgdl = 0.0
        self._built = False

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def avgdl(self) -> float:
        """Mean document length in tokens (0 before `build`)."""
        return self._avgdl

    def add(self, doc_id: K, tokens: Iterable[str]) -> None:
        """Add one document; ids must be unique, and nothing may be added after `build`."""
        if self._built:
            raise RuntimeError("BM25Index is already built; make a new one to add documents")
        if doc_id in self._positions:
            raise ValueError(f"duplicate document id: {doc_id!r}")
        counts = Counter(tokens)
        self._positions[doc_id] = len(self._ids)
        self._ids.append(doc_id)
        self._term_freqs.append(counts)
        self._lengths.append(sum(counts.values()))

    def build(self) -> None:
        """Compute idf and the posting weights; the index is read-only afterwards."""
        if self._built:
            return
        n = len(self._ids)
        self._avgdl = (sum(self._lengths) / n) if n else 0.0
        df: Counter[str] = Counter()
        for counts in self._term_freqs:
            df.update(counts.keys())
        self._idf = {term: self.idf_for(count, n) for term, count in df.items()}
        postings: dict[str, tuple[list[int], list[float]]] = {t: ([], []) for t in df}
        forward: list[dict[str, float]] = []
        for pos, counts in enumerate(self._term_freqs):
            length = self._lengths[pos]
            weights = {
                term: self._idf[term] * self._saturate(tf, length) for term, tf in counts.items()
            }
            for term, weight in weights.items():
                docs, term_weights = postings[term]
                docs.append(pos)
                term_weights.append(weight)
            forward.append(weights)
        self._postings = postings
        self._forward = forward
        self._max_weight = {term: max(ws) for term, (_, ws) in postings.items()}
        self._term_freqs = []  # the weights replace the counts
        self._built = True

    @staticmethod
    def idf_for(df: int, n: int) -> float:
        """Lucene's BM25 idf of a term found in `df` of `n` documents (always > 0)."""
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def idf(self, term: str) -> float:
        """idf of `term`; a term no document has gets the idf of df = 0 (the largest)."""
        self._check_built()
        found = self._idf.get(term)
        return found if found is not None else self.idf_for(0, len(self._ids))

    def _saturate(self, tf: float, length: float) -> float:
        norm = 1.0 - self.b + self.b * (length / self._avgdl if self._avgdl else 0.0)
        return tf * (self.k1 + 1.0) / (tf + self.k1 * norm)

    def _check_built(self) -> None:
        if not self._built:
            raise RuntimeError("call BM25Index.build() before querying")

    def score(self, query_tokens: Iterable[str], doc_id: K) -> float:
        """The BM25 score of one document (0.0 when it shares no term with the query)."""
        self._check_built()
        weights = self._forward[self._positions[doc_id]]
        return sum(weights.get(term, 0.0) for term in set(query_tokens))

    def top_k(self, query_tokens: Iterable[str], k: int) -> list[tuple[K, float]]:
        """The `k` best (doc_id, score) pairs, best first; documents scoring 0 are left out.

        Exact, with MaxScore-style pruning: terms are taken by largest weight first; once
        the terms left could not lift an unseen document above the current k-th score,
        their (long, common) postings are not walked, and only the candidates that can
        still enter the top k are completed from the forward index.
        """
        self._check_built()
        if k <= 0:
            return []
        terms = sorted(
            (t for t in set(query_tokens) if t in self._postings),
            key=lambda t: self._max_weight[t],
            reverse=True,
        )
        # rest[i]: the most that terms[i:] can add to any document.
        rest = [0.0] * (len(terms) + 1)
        for i in range(len(terms) - 1, -1, -1):
            rest[i] = rest[i + 1] + self._max_weight[terms[i]]
        acc: dict[int, float] = {}
        get = acc.get
        i = 0
        while i < len(terms):
            if len(acc) >= k and rest[i] < heapq.nlargest(k, acc.values())[-1]:
                break  # no document outside `acc` can reach the top k any more
            docs, weights = self._postings[terms[i]]
            for pos, weight in zip(docs, weights, strict=True):
                acc[pos] = get(pos, 0.0) + weight
            i += 1
        if i == len(terms):
            best = heapq.nlargest(k, ((score, -pos) for pos, score in acc.items()))
        else:
            best = self._complete(acc, terms[i:], rest[i], k)
        return [(self._ids[-neg_pos], score) for score, neg_pos in best]

    def _complete(
        self, acc: dict[int, float], remaining: list[str], bound: float, k: int
    ) -> list[tuple[float, int]]:
        """Finish the candidates' partial scores, best bound first, until none can enter."""
        forward = self._forward
        heap: list[tuple[float, int]] = []  # the k best (score, -position), smallest first
        for pos, partial in sorted(acc.items(), key=lambda item: item[1], reverse=True):
            if len(heap) == k and partial + bound < heap[0][0]:
                break  # partial scores only fall from here: nobody left can enter
            weights = forward[pos]
            item = (partial + sum(weights.get(t, 0.0) for t in remaining), -pos)
            if len(heap) < k:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
        return sorted(heap, reverse=True)

    def self_score(self, query_tokens: Sequence[str], *, doc_length: float | None = None) -> float:
        """The score the query would get against a document identical to itself.

        With `doc_length`, the document holds the query's terms, as often as the query
        does, in a text of that many tokens instead (say `avgdl`: a typical document that
        contains the whole query). Terms unknown to the index count with the largest idf:
        such a document would make them rare, and it keeps a query of mostly unknown words
        from looking well matched.
        """
        self._check_built()
        counts = Counter(query_tokens)
        length = sum(counts.values()) if doc_length is None else doc_length
        return sum(self.idf(term) * self._saturate(tf, length) for term, tf in counts.items())
