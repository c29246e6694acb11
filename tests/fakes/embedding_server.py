"""A fake embedding and rerank service on loopback: OpenAI-compatible `/v1/embeddings`,
DashScope's `/compatible-mode/v1/embeddings`, `/v1/rerank` (vLLM/Jina style) and
DashScope's `/api/v1/services/rerank/text-rerank/text-rerank`.

Rerank relevance is the share of the query's character bigrams found in the document.

Vectors are deterministic and cheap: character unigrams and bigrams hashed into `dim`
signed buckets, then scaled to unit length, so texts sharing characters are near each
other. That is lexical overlap in vector form, not semantics: good for testing the dense
path and for latency, not for judging retrieval quality. From a test:

    state = EmbeddingFakeState(dim=64)
    state.fail_next(2, status=429)            # the next 2 calls are refused (FakeState)
    state.fail_next(status=200, delay_s=3)    # the next call is slow, then answers
    with serve(embedding_app(state)) as url:
        embedder = HTTPEmbedder(f"{url}/v1", state.model, dim=64)
    state.matching("/embeddings")[0].json     # what the client sent
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from tests.fakes.base import FakeState, record

MAX_BATCH = 64


@dataclass
class EmbeddingFakeState(FakeState):
    dim: int = 64
    model: str = "fake-bge-m3"
    api_key: str = ""  # when set, `Authorization: Bearer <api_key>` is required
    max_batch: int = MAX_BATCH
    calls: int = 0
    texts: int = 0


STATE: web.AppKey[EmbeddingFakeState] = web.AppKey("state", EmbeddingFakeState)


def fake_vector(text: str, dim: int) -> list[float]:
    """The fake's vector for `text`: hashed, signed character uni- and bigram counts."""
    vec = np.zeros(dim, dtype=np.float64)
    grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
    for gram in grams:
        if gram.isspace():
            continue
        digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        vec[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = float(np.linalg.norm(vec))
    return (vec / norm).tolist() if norm else vec.tolist()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": status}}, status=status)


async def _embeddings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    failure = state.take_failure()
    if failure is not None:
        await asyncio.sleep(failure.delay_s)
        if failure.status >= 400:
            return _error(failure.status, "injected failure")
    if state.api_key and rec.headers.get("authorization") != f"Bearer {state.api_key}":
        return _error(401, "invalid api key")
    body = rec.json
    if not isinstance(body, dict) or body.get("model") != state.model:
        return _error(404, f"model not found; this server serves {state.model}")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return _error(400, "input must be a string or a non-empty list of strings")
    if len(texts) > state.max_batch:
        return _error(400, f"batch size {len(texts)} exceeds {state.max_batch}")
    with state.lock:
        state.calls += 1
        state.texts += len(texts)
    data = [
        {"object": "embedding", "index": i, "embedding": fake_vector(t, state.dim)}
        for i, t in enumerate(texts)
    ]
    usage = sum(len(t) for t in texts)
    return web.json_response(
        {
            "object": "list",
            "model": state.model,
            "data": data,
            "usage": {"prompt_tokens": usage, "total_tokens": usage},
        }
    )


def relevance(query: str, document: str) -> float:
    """The fake reranker's score: the share of the query's character bigrams in `document`."""
    grams = {query[i : i + 2] for i in range(len(query) - 1)} or {query}
    return sum(g in document for g in grams) / len(grams)


async def _rerank(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    failure = state.take_failure()
    if failure is not None:
        await asyncio.sleep(failure.delay_s)
        if failure.status >= 400:
            return _error(failure.status, "injected failure")
    body = rec.json if isinstance(rec.json, dict) else {}
    dashscope = request.path.endswith("/text-rerank")
    source = body.get("input", {}) if dashscope else body
    query, documents = source.get("query"), source.get("documents")
    if not isinstance(query, str) or not isinstance(documents, list) or not documents:
        return _error(400, "query and a non-empty documents list are required")
    scored = sorted(
        ({"index": i, "relevance_score": relevance(query, d)} for i, d in enumerate(documents)),
        key=lambda r: -r["relevance_score"],
    )
    if dashscope:
        return web.json_response({"output": {"results": scored}, "request_id": "fake"})
    return web.json_response({"id": "fake", "model": body.get("model"), "results": scored})


def embedding_app(state: EmbeddingFakeState) -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    app[STATE] = state
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_post("/compatible-mode/v1/embeddings", _embeddings)
    app.router.add_post("/v1/rerank", _rerank)
    app.router.add_post("/api/v1/services/rerank/text-rerank/text-rerank", _rerank)
    return app
