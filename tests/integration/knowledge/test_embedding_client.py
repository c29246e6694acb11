"""The embedding client against the fake embedding server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from knowledge.embedding import EmbeddingError, HTTPEmbedder, RateLimit
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app

_clients: list[HTTPEmbedder] = []


@pytest.fixture
def fake() -> Iterator[tuple[EmbeddingFakeState, str]]:
    state = EmbeddingFakeState(dim=32, api_key="sk-test")
    with serve(embedding_app(state)) as url:
        yield state, url
    while _clients:
        _clients.pop().close()


def _client(url: str, model: str = "fake-bge-m3", **kwargs: object) -> HTTPEmbedder:
    options: dict = {"api_key": "sk-test", "dim": 32, "backoff_s": 0.01, **kwargs}
    client = HTTPEmbedder(f"{url}/v1", model, **options)
    _clients.append(client)
    return client


def test_batches_keep_order_and_rows_are_unit_length(fake) -> None:
    state, url = fake
    texts = [f"信用卡额度{i}" for i in range(7)] + ["", "怎么还款"]
    progress: list[tuple[int, int]] = []
    vectors = _client(url, batch_size=4).embed(
        texts, on_progress=lambda d, t: progress.append((d, t))
    )
    assert vectors.shape == (9, 32)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[[0, 1, 8]], axis=1), 1.0, atol=1e-5)
    assert [len(r.json["input"]) for r in state.matching("/embeddings")] == [4, 4, 1]
    assert progress == [(4, 9), (8, 9), (9, 9)]
    # the same text gives the same row wherever it is in the batch
    again = _client(url).embed(["怎么还款"])
    assert np.allclose(again[0], vectors[8])
    # similar texts are nearer than unrelated ones (the fake's character n-grams)
    a, b, c = _client(url).embed(["信用卡额度怎么提高", "怎么提高信用卡额度", "快递几天到"])
    assert float(a @ b) > float(a @ c) + 0.3


def test_retries_429_and_5xx_then_succeeds(fake) -> None:
    state, url = fake
    state.fail_next(1, status=429)
    state.fail_next(1, status=503)
    vectors = _client(url, retries=3).embed(["你好"])
    assert vectors.shape == (1, 32)
    assert len(state.matching("/embeddings")) == 3


def test_gives_up_after_retries(fake) -> None:
    state, url = fake
    state.fail_next(5, status=500)
    with pytest.raises(EmbeddingError, match="unavailable: HTTP 500"):
        _client(url, retries=2).embed(["你好"])
    assert len(state.matching("/embeddings")) == 3


def test_client_errors_are_not_retried(fake) -> None:
    state, url = fake
    with pytest.raises(EmbeddingError, match="refused the request: HTTP 401"):
        _client(url, api_key="wrong").embed(["你好"])
    with pytest.raises(EmbeddingError, match="HTTP 404"):
        _client(url, "other-model").embed(["你好"])
    assert len(state.matching("/embeddings")) == 2


def test_query_timeout_is_short_and_not_retried(fake) -> None:
    state, url = fake
    state.fail_next(status=200, delay_s=1.0)
    with pytest.raises(EmbeddingError, match="ReadTimeout"):
        _client(url, query_timeout_s=0.2).embed(["你好"], query=True)
    assert len(state.matching("/embeddings")) == 1
    # an ingestion batch with a longer timeout waits the slow call out
    state.fail_next(status=200, delay_s=0.3)
    assert _client(url, timeout_s=5).embed(["你好"]).shape == (1, 32)


def test_wrong_dimension_is_a_clear_error(fake) -> None:
    _, url = fake
    with pytest.raises(EmbeddingError, match="32-dimensional vectors, EMBEDDING_DIM says 1024"):
        _client(url, dim=1024).embed(["你好"])


def test_unreachable_service(fake) -> None:
    with pytest.raises(EmbeddingError, match="ConnectError"):
        _client("http://127.0.0.1:9", retries=1).embed(["你好"])


def test_dashscope_compatible_mode_asks_for_dimensions(fake) -> None:
    state, url = fake
    with HTTPEmbedder(
        f"{url}/compatible-mode/v1", "fake-bge-m3", "sk-test", dim=32, send_dimensions=True
    ) as embedder:
        assert embedder.embed(["你好"]).shape == (1, 32)
    assert state.matching("/compatible-mode/v1/embeddings")[0].json["dimensions"] == 32


def test_ingestion_calls_keep_to_the_rate_limit_and_a_query_never_waits(fake) -> None:
    state, url = fake
    client = _client(url, batch_size=2, calls_per_minute=600)  # one call per 0.1 s
    start = time.monotonic()
    client.embed([f"问题{i}" for i in range(8)])  # 4 calls: the last 0.3 s after the first
    assert time.monotonic() - start >= 0.29
    assert len(state.matching("/embeddings")) == 4
    start = time.monotonic()
    client.embed(["现在查询"], query=True)
    assert time.monotonic() - start < 0.09


def test_rate_limit_spaces_calls_from_several_threads_evenly() -> None:
    now = [100.0]
    waits: list[float] = []
    limit = RateLimit(120, clock=lambda: now[0], sleep=waits.append)  # one per 0.5 s
    assert [limit.wait() for _ in range(3)] == [0.0, 0.5, 1.0]
    now[0] += 5.0  # idle for a while: the next call goes at once, no burst is saved up
    assert limit.wait() == 0.0
    assert waits == [0.5, 1.0]
    assert RateLimit(0).wait() == 0.0
