"""Text embeddings from an OpenAI-compatible `/v1/embeddings` endpoint or DashScope.

One client serves both: vLLM (bge-m3 and the like), OpenAI, and DashScope's
OpenAI-compatible mode (``compatible-mode/v1``, text-embedding-v3/v4, at most 10 texts
per call). Vectors come back as float32 rows scaled to unit length, so a dot product is
the cosine similarity.

Ingestion embeds in batches with retries on 429, 5xx, timeouts and refused connections
(exponential backoff, honouring a short ``Retry-After``), at most `calls_per_minute`
calls a minute when set (the service's rate limit, shared by the client's threads); a
query is embedded with a short timeout and no retry, since the caller falls back to
keyword search.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
DASHSCOPE_MODEL = "text-embedding-v3"
DASHSCOPE_BATCH = 10  # the service's limit per call for text-embedding-v3/v4
_RETRY_AFTER_MAX_S = 10.0


ProgressCallback = Callable[[int, int], None]  # (texts embedded so far, total)


class EmbeddingError(Exception):
    """The embedding service failed, or answered something that is not an embedding."""


class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors, one row per text, in order."""

    model: str

    def embed(
        self,
        texts: Sequence[str],
        *,
        query: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> Vectors: ...

    def close(self) -> None:
        """Release the client's connections."""
        ...


class HTTPEmbedder:
    """An OpenAI-compatible embeddings client; thread-safe (one pooled httpx client).

    Args:
        base_url: up to and including ``/v1`` (``{base_url}/embeddings`` is called).
        dim: the expected vector size; 0 accepts what the model returns. With
            `send_dimensions` (DashScope v3/v4) it is also asked for.
        timeout_s / retries: for ingestion batches.
        query_timeout_s: for one query at search time, never retried.
        calls_per_minute: at most this many ingestion calls a minute (0: no limit).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        dim: int = 0,
        batch_size: int = 32,
        timeout_s: float = 30.0,
        query_timeout_s: float = 2.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        send_dimensions: bool = False,
        calls_per_minute: int = 0,
    ) -> None:
        if not base_url or not model:
            raise ValueError("an embedding service needs a base URL and a model name")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dim = dim
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.query_timeout_s = query_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._send_dimensions = send_dimensions and dim > 0
        self._pace = RateLimit(calls_per_minute)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed(
        self,
        texts: Sequence[str],
        *,
        query: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> Vectors:
        """The vectors of `texts` (rows in order); `query`: one fast try with a short timeout.

        Raises:
            EmbeddingError: the service failed after its retries, or answered badly.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[Vectors] = []
        done = 0
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
            rows.append(self._call(batch, query=query))
            done += len(batch)
            if on_progress is not None:
                on_progress(done, len(texts))
        return np.vstack(rows)

    def _call(self, batch: list[str], *, query: bool) -> Vectors:
        body: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self._send_dimensions:
            body["dimensions"] = self.dim
        timeout = self.query_timeout_s if query else self.timeout_s
        tries = 1 if query else self.retries + 1
        for attempt in range(1, tries + 1):
            if not query:  # a query never waits: search falls back to keywords instead
                self._pace.wait()
            try:
                response = self._client.post(
                    f"{self.base_url}/embeddings", json=body, timeout=timeout
                )
            except httpx.TransportError as exc:  # timeouts, refused or dropped connections
                reason = f"{type(exc).__name__}: {exc}"
                wait = self._backoff(attempt)
            else:
                if response.status_code == 200:
                    return self._parse(response, len(batch))
                reason = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code != 429 and response.status_code < 500:
                    raise EmbeddingError(f"embedding service refused the request: {reason}")
                wait = _retry_after(response) or self._backoff(attempt)
            if attempt < tries:
                log.warning("embedding call failed (try %d of %d): %s", attempt, tries, reason)
                time.sleep(wait)
        raise EmbeddingError(f"embedding service unavailable: {reason}")

    def _backoff(self, attempt: int) -> float:
        return float(self.backoff_s * 2 ** (attempt - 1))

    def _parse(self, response: httpx.Response, expected: int) -> Vectors:
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"not an embeddings response: {exc}") from None
        if matrix.ndim != 2 or matrix.shape[0] != expected:
            raise EmbeddingError(f"asked for {expected} vectors, got shape {matrix.shape}")
        if self.dim and matrix.shape[1] != self.dim:
            raise EmbeddingError(
                f"model {self.model} returns {matrix.shape[1]}-dimensional vectors, "
                f"EMBEDDING_DIM says {self.dim}"
            )
        return normalize(matrix)


class RateLimit:
    """At most `per_minute` calls a minute, evenly spaced (0: no limit); thread-safe.

    `wait` blocks until the caller's call may go; `clock` and `sleep` are for tests.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Wait for this call's turn; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)
        return at - now


def normalize(matrix: Vectors) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32, copy=False)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    try:
        return min(max(float(raw), 0.0), _RETRY_AFTER_MAX_S)
    except ValueError:
        return None


def make_embedder(
    provider: str,
    base_url: str,
    model: str,
    api_key: str,
    *,
    dim: int = 0,
    batch_size: int = 32,
    timeout_s: float = 30.0,
    query_timeout_s: float = 2.0,
    retries: int = 3,
    calls_per_minute: int = 0,
) -> HTTPEmbedder:
    """The client for a provider: ``dashscope`` (compatible mode, its defaults and batch
    limit, asking for `dim` when set) or any OpenAI-compatible endpoint."""
    if provider == "dashscope":
        return HTTPEmbedder(
            base_url or DASHSCOPE_BASE_URL,
            model or DASHSCOPE_MODEL,
            api_key,
            dim=dim,
            batch_size=min(batch_size, DASHSCOPE_BATCH),
            timeout_s=timeout_s,
            query_timeout_s=query_timeout_s,
            retries=retries,
            send_dimensions=True,
            calls_per_minute=calls_per_minute,
        )
    return HTTPEmbedder(
        base_url,
        model,
        api_key,
        dim=dim,
        batch_size=batch_size,
        timeout_s=timeout_s,
        query_timeout_s=query_timeout_s,
        retries=retries,
        calls_per_minute=calls_per_minute,
    )
