"""DenseIndex (brute-force cosine) and the fusion rules of HybridRetriever."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.embedding import HTTPEmbedder, normalize
from knowledge.loaders import FaqEntry
from knowledge.search.dense import DenseIndex
from knowledge.search.hybrid import HybridRetriever
from knowledge.search.retrieval import CHUNK_KEY, FAQ_KEY, KeywordRetriever
from knowledge.text.chunking import Chunk


def _unit(*rows: list[float]) -> np.ndarray:
    return normalize(np.asarray(rows, dtype=np.float32))


def test_a_key_scores_its_best_row_and_keys_without_rows_are_left_out() -> None:
    # key 0 has two rows (an FAQ entry's two questions), key 1 none, key 2 one.
    matrix = _unit([1, 0, 0], [0, 1, 0], [0.6, 0.8, 0])
    index = DenseIndex(3, [0, 2, 0], matrix)
    assert (len(index), index.covered, index.n_keys) == (3, 2, 3)
    sims = index.similarities(_unit([0, 1, 0])[0])
    assert sims.tolist() == pytest.approx([0.8, 0.0, 1.0])
    top, found = index.search(_unit([0, 1, 0])[0], 2, also=[1])
    assert top == [2, 0]
    assert found == pytest.approx({2: 1.0, 0: 0.8})  # key 1 has no vector: not reported


def test_top_breaks_ties_by_lower_key_and_caps_n() -> None:
    sims = np.asarray([0.5, 0.9, 0.5, 0.1], dtype=np.float32)
    assert DenseIndex.top(sims, 3) == [1, 0, 2]
    assert DenseIndex.top(sims, 10) == [1, 0, 2, 3]
    assert DenseIndex.top(sims, 0) == []


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="row keys"):
        DenseIndex(2, [0], _unit([1, 0], [0, 1]))


@pytest.fixture
def hybrid_parts() -> tuple[KeywordRetriever, DenseIndex, HTTPEmbedder]:
    faqs = [
        FaqEntry("怎么开发票", "在订单页申请。", "faq.csv", ("发票在哪里开",)),
        FaqEntry("运费多少钱", "满 99 包邮。", "faq.csv"),
    ]
    chunks = [Chunk("签收七天内可以无理由退货。", "policy.md", "退货", ("退货",))]
    keyword = KeywordRetriever(chunks, faqs)
    # Keys: FAQ 0 (2 questions), FAQ 1, chunk 0. The query vector below is nearest the
    # chunk, which shares no word with the query.
    matrix = _unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1])
    dense = DenseIndex(3, [0, 0, 1, 2], matrix)
    return keyword, dense, HTTPEmbedder("http://127.0.0.1:9/v1", "unused")


def test_weighted_blend_is_a_confidence_and_dense_only_hits_come_in(hybrid_parts) -> None:
    keyword, dense, embedder = hybrid_parts
    retriever = HybridRetriever(keyword, dense, embedder, weight=0.5, sim_floor=0.0)
    query_vector = _unit([0, 0, 1])[0]
    fused = retriever.fuse("怎么开发票", query_vector, 3)
    by_key = dict(fused)
    assert set(by_key) == {(FAQ_KEY, 0), (CHUNK_KEY, 0), (FAQ_KEY, 1)}
    # lexical 1.0 (the question itself), cosine 0 -> 0.5; chunk: lexical 0, cosine 1 -> 0.5
    assert by_key[(FAQ_KEY, 0)] == pytest.approx(0.5)
    assert by_key[(CHUNK_KEY, 0)] == pytest.approx(0.5)
    assert fused[0][0] == (FAQ_KEY, 0)  # tie: the FAQ entry first
    assert all(0.0 <= s <= 1.0 for _, s in fused)
    # An identical question at cosine 1 is a full-confidence hit.
    exact = retriever.fuse("怎么开发票", _unit([1, 0, 0])[0], 1)
    assert exact == [((FAQ_KEY, 0), pytest.approx(1.0))]
    embedder.close()


def test_rrf_orders_by_ranks_and_keeps_the_blend_as_score(hybrid_parts) -> None:
    keyword, dense, embedder = hybrid_parts
    rrf = HybridRetriever(keyword, dense, embedder, fusion="rrf", sim_floor=0.0)
    weighted = HybridRetriever(keyword, dense, embedder, fusion="weighted", sim_floor=0.0)
    vector = _unit([0, 1, 0.2])[0]
    got = rrf.fuse("运费多少钱", vector, 3)
    # FAQ 1 is first in both rankings: first by RRF, scored by the same blend as weighted.
    assert got[0][0] == (FAQ_KEY, 1)
    assert dict(got) == pytest.approx(dict(weighted.fuse("运费多少钱", vector, 3)))
    embedder.close()


def test_bad_options_are_refused(hybrid_parts) -> None:
    keyword, dense, embedder = hybrid_parts
    with pytest.raises(ValueError, match="fusion must be"):
        HybridRetriever(keyword, dense, embedder, fusion="max")
    with pytest.raises(ValueError, match="weight must be"):
        HybridRetriever(keyword, dense, embedder, weight=2)
    with pytest.raises(ValueError, match="one key per FAQ entry and chunk"):
        HybridRetriever(keyword, DenseIndex(2, [0], _unit([1, 0])), embedder)
    embedder.close()
