"""Brute-force cosine search over unit-length vectors held in one float32 matrix.

Rows are grouped by key (a passage has one row, an FAQ entry one per question), keys in
ascending order, so a key's similarity, the best of its rows, is one `maximum.reduceat`
over the query's row similarities. At 100,000 rows of 256 floats a query is one
matrix-vector product of about 100 MB/s of memory traffic per millisecond: brute force
is fine at knowledge-base sizes (see `benchmarks/retrieval_scale.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Protocol

import numpy as np
import numpy.typing as npt

from knowledge.embedding import Vectors


class VectorSearch(Protocol):
    """Nearest keys to a query vector: in memory (`DenseIndex`) or in PostgreSQL."""

    n_keys: int

    def search(
        self, query: Vectors, n: int, also: Sequence[int] = ()
    ) -> tuple[list[int], dict[int, float]]:
        """The `n` nearest keys best first, and the cosine of those and of keys `also`
        (a key without a vector is left out)."""
        ...


class DenseIndex:
    """Cosine similarity of a query vector to each of `n_keys` keys (0..n_keys-1).

    Args:
        n_keys: how many keys there are; keys without rows have similarity `missing`.
        row_keys: the key of each row of `matrix`.
        matrix: one unit-length float32 vector per row.
    """

    def __init__(
        self, n_keys: int, row_keys: Sequence[int], matrix: Vectors, *, missing: float = 0.0
    ) -> None:
        keys = np.asarray(row_keys, dtype=np.int64)
        if matrix.ndim != 2 or matrix.shape[0] != keys.shape[0]:
            raise ValueError(f"{keys.shape[0]} row keys for a matrix of shape {matrix.shape}")
        if keys.size and bool(np.any(keys[1:] < keys[:-1])):
            order = np.argsort(keys, kind="stable")
            keys, matrix = keys[order], matrix[order]
        # Already grouped (the usual case): the caller's matrix is used as is, no copy.
        self._keys = keys
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.n_keys = n_keys
        self.dim = int(matrix.shape[1])
        self.missing = missing
        if self._keys.size:
            starts = np.flatnonzero(np.r_[True, self._keys[1:] != self._keys[:-1]])
        else:
            starts = np.zeros(0, dtype=np.int64)
        self._starts = starts
        self._present = self._keys[starts]  # the keys that have rows, ascending
        self._mask: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self._matrix.shape[0])

    @property
    def covered(self) -> int:
        """How many keys have at least one vector."""
        return int(self._present.size)

    def similarities(self, query: Vectors) -> npt.NDArray[np.float32]:
        """Every key's cosine similarity to unit vector `query` (`missing` for no rows)."""
        result = np.full(self.n_keys, self.missing, dtype=np.float32)
        if not self._starts.size:
            return result
        rows = self._matrix @ np.asarray(query, dtype=np.float32).reshape(-1)
        result[self._present] = np.maximum.reduceat(rows, self._starts)
        return result

    def search(
        self, query: Vectors, n: int, also: Sequence[int] = ()
    ) -> tuple[list[int], dict[int, float]]:
        """See `VectorSearch.search`."""
        sims = self.similarities(query)
        top = self.top(sims, n)
        present = self.missing_mask()
        # A key past n_keys (an entry added since this index was built) has no vector here.
        return top, {
            k: float(sims[k]) for k in chain(top, also) if k < self.n_keys and not present[k]
        }

    def missing_mask(self) -> npt.NDArray[np.bool_]:
        """True for the keys without any vector."""
        if self._mask is None:
            mask = np.ones(self.n_keys, dtype=np.bool_)
            mask[self._present] = False
            self._mask = mask
        return self._mask

    @staticmethod
    def top(similarities: npt.NDArray[np.float32], n: int) -> list[int]:
        """The keys of the `n` largest similarities, best first (ties: lower key first)."""
        n = min(n, similarities.size)
        if n <= 0:
            return []
        part = np.argpartition(-similarities, n - 1)[:n]
        return [int(i) for i in part[np.lexsort((part, -similarities[part]))]]
