"""An optional reranker over the fused hits: OpenAI-style `/v1/rerank` or DashScope rerank.

Speaks two wire formats:

- ``openai`` (vLLM, Jina, bge servers): ``POST {base}/rerank`` with ``{model, query,
  documents, top_n}``, answering ``{"results": [{"index", "relevance_score"}]}``;
- ``dashscope`` (gte-rerank): ``POST {base}/services/rerank/text-rerank/text-rerank`` with
  ``{model, input: {query, documents}, parameters: {top_n}}``, answering
  ``{"output": {"results": [...]}}``.

`RerankingRetriever` reorders the first `candidates` hits of any `Retriever` by relevance
and keeps each hit's own score: rerankers' relevance scores are not calibrated across
models, and the agent's thresholds (`faq_direct_score`) are calibrated on the fused
confidence. When the reranker fails or is slow, the fused order stands (logged, counted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import Counter

from knowledge.base import Hit, Retriever

if TYPE_CHECKING:
    from sqlmodel import Session

log = logging.getLogger(__name__)

DASHSCOPE_RERANK_BASE = "https://dashscope.aliyuncs.com/api/v1"
DASHSCOPE_RERANK_MODEL = "gte-rerank"
_DASHSCOPE_PATH = "/services/rerank/text-rerank/text-rerank"

RERANK_FALLBACKS = Counter(
    "bot_kb_rerank_fallback_total",
    "Knowledge searches that kept the fused order because the reranker failed",
)


class RerankError(Exception):
    """The rerank service failed or answered something that is not a ranking."""


class HTTPReranker:
    """A rerank client for `provider` ``openai`` or ``dashscope``; thread-safe."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        *,
        provider: str = "openai",
        timeout_s: float = 2.0,
    ) -> None:
        if provider not in ("openai", "dashscope"):
            raise ValueError(f"unknown rerank provider {provider!r}")
        if provider == "dashscope":
            base_url = base_url or DASHSCOPE_RERANK_BASE
            model = model or DASHSCOPE_RERANK_MODEL
        if not base_url or not model:
            raise ValueError("a rerank service needs a base URL and a model name")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.provider = provider
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPReranker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rerank(self, query: str, documents: Sequence[str]) -> list[int]:
        """The indexes of `documents`, most relevant first. Raises RerankError."""
        if not documents:
            return []
        if self.provider == "dashscope":
            url = f"{self.base_url}{_DASHSCOPE_PATH}"
            body: dict[str, Any] = {
                "model": self.model,
                "input": {"query": query, "documents": list(documents)},
                "parameters": {"top_n": len(documents), "return_documents": False},
            }
        else:
            url = f"{self.base_url}/rerank"
            body = {
                "model": self.model,
                "query": query,
                "documents": list(documents),
                "top_n": len(documents),
            }
        try:
            response = self._client.post(url, json=body)
        except httpx.TransportError as exc:
            raise RerankError(f"rerank service unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RerankError(f"rerank service answered HTTP {response.status_code}")
        try:
            data = response.json()
            results = data["output"]["results"] if self.provider == "dashscope" else data["results"]
            ranked = sorted(results, key=lambda r: -float(r["relevance_score"]))
            order = [int(r["index"]) for r in ranked]
        except (ValueError, KeyError, TypeError) as exc:
            raise RerankError(f"not a rerank response: {exc}") from None
        if sorted(order) != list(range(len(documents))):
            # Some servers return only top_n; anything else is not a permutation we trust.
            seen = set(order)
            if not seen <= set(range(len(documents))) or len(seen) != len(order):
                raise RerankError("rerank response indexes do not match the documents")
            order += [i for i in range(len(documents)) if i not in seen]
        return order


class RerankingRetriever:
    """`inner`'s hits, the first `candidates` reordered by `reranker`; a `Retriever`."""

    def __init__(self, inner: Retriever, reranker: HTTPReranker, *, candidates: int = 20) -> None:
        self.inner = inner
        self.reranker = reranker
        self.candidates = candidates

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def refreshed(self, session: Session) -> RerankingRetriever | None:
        """The inner retriever refreshed (see `knowledge.cache.Refreshable`), reranked."""
        from knowledge.cache import Refreshable

        if not isinstance(self.inner, Refreshable):
            return None
        inner = self.inner.refreshed(session)
        if inner is None:
            return None
        if inner is self.inner:
            return self
        return RerankingRetriever(inner, self.reranker, candidates=self.candidates)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        hits = self.inner.search(query, max(k, self.candidates))
        if len(hits) < 2:
            return hits[:k]
        try:
            order = self.reranker.rerank(query, [_document(h) for h in hits])
        except RerankError as exc:
            RERANK_FALLBACKS.inc()
            log.warning("rerank failed, keeping the fused order: %s", exc)
            return hits[:k]
        return [hits[i] for i in order[:k]]


def _document(hit: Hit) -> str:
    # An FAQ entry is judged on its question and answer; a passage on its section and text.
    if hit.answer is not None:
        return f"{hit.text}\n{hit.answer}"
    return f"{hit.section}\n{hit.text}" if hit.section else hit.text
