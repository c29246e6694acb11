"""The reranker against the fake rerank endpoints on loopback (both wire formats)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from knowledge.base import Hit
from knowledge.search.rerank import RERANK_FALLBACKS, HTTPReranker, RerankError, RerankingRetriever
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app


class ListRetriever:
    """A fixed ranking, standing in for the fused retriever."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.hits[:k]


HITS = [
    Hit("运费怎么算", "faq.csv", "FAQ", 0.62, answer="满 99 元包邮，否则 8 元。"),
    Hit("发票在订单详情页申请，电子发票开具后发到邮箱。", "policies.md", "发票", 0.55),
    Hit("退货请在签收 7 天内申请。", "policies.md", "退货", 0.40),
]


@pytest.fixture
def fake() -> Iterator[tuple[EmbeddingFakeState, str]]:
    state = EmbeddingFakeState()
    with serve(embedding_app(state)) as url:
        yield state, url


@pytest.mark.parametrize("provider", ["openai", "dashscope"])
def test_reorders_by_relevance_and_keeps_scores(fake, provider: str) -> None:
    state, url = fake
    base = f"{url}/v1" if provider == "openai" else f"{url}/api/v1"
    with HTTPReranker(base, "fake-rerank", provider=provider) as reranker:
        retriever = RerankingRetriever(ListRetriever(HITS), reranker, candidates=3)
        hits = retriever.search("电子发票怎么开", k=2)
    assert [h.section for h in hits] == ["发票", "FAQ"]
    assert hits[0].score == 0.55  # the fused confidence, not the reranker's relevance
    sent = state.requests[-1].json
    documents = sent["input"]["documents"] if provider == "dashscope" else sent["documents"]
    assert documents[0] == "运费怎么算\n满 99 元包邮，否则 8 元。"
    assert documents[1].startswith("发票\n")


def test_failure_or_timeout_keeps_the_fused_order(fake) -> None:
    state, url = fake
    before = RERANK_FALLBACKS._value.get()
    with HTTPReranker(f"{url}/v1", "fake-rerank", timeout_s=0.2) as reranker:
        retriever = RerankingRetriever(ListRetriever(HITS), reranker)
        state.fail_next(status=503)
        assert retriever.search("电子发票怎么开", 3) == HITS
        state.fail_next(status=200, delay_s=1.0)
        assert retriever.search("电子发票怎么开", 3) == HITS
        state.fail_next(status=503)
        with pytest.raises(RerankError, match="HTTP 503"):
            reranker.rerank("q", ["a", "b"])
    assert RERANK_FALLBACKS._value.get() == before + 2


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rerank provider"):
        HTTPReranker("http://127.0.0.1:9", "m", provider="cohere")
    with pytest.raises(ValueError, match="base URL and a model"):
        HTTPReranker("", "m")
