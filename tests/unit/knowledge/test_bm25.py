"""The BM25 index: ranking sanity, exact pruning, self-score, misuse."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from knowledge.search.bm25 import BM25Index


def _index(docs: dict[str, str], **options: float) -> BM25Index[str]:
    index: BM25Index[str] = BM25Index(**options)
    for doc_id, text in docs.items():
        index.add(doc_id, text.split())
    index.build()
    return index


def test_matching_document_ranks_first_and_non_matching_are_left_out() -> None:
    index = _index({"a": "refund money back", "b": "shipping time days", "c": "invoice tax"})
    assert [doc for doc, _ in index.top_k(["refund", "money"], 5)] == ["a"]


def test_rare_terms_weigh_more_than_common_ones() -> None:
    docs = {f"common{i}": "order status" for i in range(10)}
    docs["rare"] = "invoice status"
    docs["both"] = "order invoice"
    index = _index(docs)
    ranked = [doc for doc, _ in index.top_k(["invoice", "order"], 3)]
    assert ranked[0] == "both"
    assert ranked[1] == "rare"  # "invoice" alone beats "order" alone


def test_shorter_document_wins_at_equal_term_frequency() -> None:
    index = _index({"long": "refund " + "filler " * 20, "short": "refund policy"})
    assert index.top_k(["refund"], 2)[0][0] == "short"


def test_term_frequency_saturates() -> None:
    index = _index({"one": "x a b c", "three": "x x x c", "other": "d e f g"})
    scores = dict(index.top_k(["x"], 3))
    assert scores["three"] > scores["one"]
    assert scores["three"] < 3 * scores["one"]


def test_ties_keep_insertion_order_and_k_is_respected() -> None:
    index = _index({"first": "same text", "second": "same text", "third": "same text"})
    assert [doc for doc, _ in index.top_k(["same"], 2)] == ["first", "second"]
    assert index.top_k(["same"], 0) == []


def test_repeated_query_terms_count_once() -> None:
    index = _index({"a": "refund money", "b": "money"})
    assert index.top_k(["refund", "refund", "money"], 2) == index.top_k(["refund", "money"], 2)


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_pruned_top_k_equals_a_full_scan(k: int) -> None:
    rng = random.Random(k)
    vocabulary = [f"t{i}" for i in range(60)]
    weights = [1.0 / (i + 1) for i in range(60)]  # Zipf-like: a few very common terms
    index: BM25Index[int] = BM25Index()
    for doc in range(400):
        index.add(doc, rng.choices(vocabulary, weights, k=rng.randint(3, 25)))
    index.build()
    for _ in range(50):
        query = rng.choices(vocabulary, weights, k=rng.randint(1, 8))
        full = sorted(((index.score(query, d), -d) for d in range(400)), reverse=True)
        expected = [(-neg, s) for s, neg in full if s > 0][:k]
        got = index.top_k(query, k)
        assert [d for d, _ in got] == [d for d, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected])


def test_self_score_is_the_score_of_an_identical_document() -> None:
    index = _index({"q": "how to get an invoice", "x": "refund in seven days", "y": "to ship"})
    query = ["how", "to", "get", "an", "invoice"]
    assert index.self_score(query) == pytest.approx(index.score(query, "q"))
    assert index.top_k(query, 1)[0][1] == pytest.approx(index.self_score(query))


def test_unknown_terms_count_with_the_largest_idf() -> None:
    index = _index({"a": "x y", "b": "y z"})
    assert index.idf("never-seen") == pytest.approx(math.log(1 + 2.5 / 0.5))
    assert index.idf("never-seen") > index.idf("x") > index.idf("y")
    assert index.self_score(["x", "never-seen"]) > index.self_score(["x"])


def test_scores_are_lucene_bm25() -> None:
    index = _index({"a": "x y y", "b": "y"}, k1=1.2, b=0.5)
    avgdl = 2.0
    idf_y = math.log(1 + (2 - 2 + 0.5) / (2 + 0.5))
    idf_x = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    norm = 1 - 0.5 + 0.5 * 3 / avgdl
    expected = idf_x * 2.2 / (1 + 1.2 * norm) + idf_y * 2 * 2.2 / (2 + 1.2 * norm)
    assert index.score(["x", "y"], "a") == pytest.approx(expected)


def test_misuse_is_refused() -> None:
    index: BM25Index[str] = BM25Index()
    index.add("a", ["x"])
    with pytest.raises(ValueError, match="duplicate"):
        index.add("a", ["y"])
    with pytest.raises(RuntimeError, match="build"):
        index.top_k(["x"], 1)
    index.build()
    with pytest.raises(RuntimeError, match="already built"):
        index.add("b", ["y"])
    with pytest.raises(ValueError, match="k1"):
        BM25Index(k1=-1)
    with pytest.raises(ValueError, match="b="):
        BM25Index(b=1.5)


def test_empty_index_answers_nothing() -> None:
    index: BM25Index[str] = BM25Index()
    index.build()
    assert index.top_k(["x"], 5) == []
    assert len(index) == 0


def test_self_score_at_a_given_length_is_that_of_a_document_holding_the_query() -> None:
    index = _index({"holds": "a b x y", "other": "c d e f"})
    assert index.avgdl == 4
    query = ["a", "b"]
    assert index.self_score(query, doc_length=index.avgdl) == pytest.approx(
        index.score(query, "holds")
    )
    assert index.self_score(query) > index.self_score(query, doc_length=index.avgdl)


def _reference_ranking(
    docs: list[list[str]], query: list[str], k: int, k1: float, b: float
) -> list[tuple[int, float]]:
    """Textbook BM25, one document at a time, in plain Python floats.

    Terms are summed in the index's documented order (largest posting weight first, then
    by name) so that equal maths gives equal bits.
    """
    n = len(docs)
    counts = [Counter(doc) for doc in docs]
    avgdl = sum(len(doc) for doc in docs) / n
    df: Counter[str] = Counter()
    for c in counts:
        df.update(c.keys())
    weight: dict[str, dict[int, float]] = {t: {} for t in df}
    for d, c in enumerate(counts):
        norm = 1.0 - b + b * (len(docs[d]) / avgdl)
        for t, tf in c.items():
            idf = math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5))
            weight[t][d] = idf * (tf * (k1 + 1.0) / (tf + k1 * norm))
    terms = sorted((t for t in set(query) if t in df), key=lambda t: (-max(weight[t].values()), t))
    scores = []
    for d in range(n):
        total = 0.0
        for t in terms:
            total += weight[t].get(d, 0.0)
        if total > 0.0:
            scores.append((d, total))
    scores.sort(key=lambda ds: (-ds[1], ds[0]))
    return scores[:k]


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.3), (0.0, 1.0), (2.0, 0.0)])
def test_rankings_and_scores_are_bit_identical_to_a_plain_reference(k1: float, b: float) -> None:
    rng = random.Random(int(k1 * 10 + b * 100))
    vocabulary = [f"w{i}" for i in range(300)]
    weights = [1.0 / (i + 1) for i in range(300)]
    docs = [rng.choices(vocabulary, weights, k=rng.randint(1, 40)) for _ in range(600)]
    index: BM25Index[int] = BM25Index(k1, b)
    for doc_id, tokens in enumerate(docs):
        index.add(doc_id, tokens)
    index.build()
    assert index.n_postings == sum(len(set(doc)) for doc in docs)
    for _ in range(40):
        query = [*rng.choices(vocabulary, weights, k=rng.randint(1, 6)), "unknown"]
        expected = _reference_ranking(docs, query, 25, k1, b)
        assert index.top_k(query, 25) == expected  # exact floats, not approx
        assert index.scores(query, [d for d, _ in expected]) == [s for _, s in expected]


def test_a_large_corpus_builds_in_blocks_with_exact_weights() -> None:
    # More postings than one weight block (2**20): block edges must not shift anything.
    rng = random.Random(3)
    index: BM25Index[int] = BM25Index()
    docs = [[f"t{rng.randrange(5000)}" for _ in range(30)] for _ in range(40_000)]
    for doc_id, tokens in enumerate(docs):
        index.add(doc_id, tokens)
    index.build()
    assert index.n_postings > 1 << 20
    n, avgdl = len(docs), index.avgdl
    for d in (0, 17_000, 34_952, 39_999):
        tokens = docs[d]
        term = tokens[0]
        df = sum(1 for doc in docs if term in doc)
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        tf = tokens.count(term)
        norm = 1.0 - 0.75 + 0.75 * (len(tokens) / avgdl)
        assert index.score([term], d) == idf * (tf * 2.5 / (tf + 1.5 * norm))


def test_updated_equals_an_index_built_from_scratch() -> None:
    rng = random.Random(5)
    words = [f"w{i}" for i in range(40)]
    docs = {f"d{i}": [rng.choice(words) for _ in range(rng.randint(1, 12))] for i in range(60)}
    base: BM25Index[str] = BM25Index(k1=1.2, b=0.6)
    for doc_id, tokens in docs.items():
        base.add(doc_id, tokens)
    base.build()
    dropped = {"d3", "d10", "d59", "d0"}
    added = [("d10", ["w1", "new", "w2"]), ("n1", ["brand", "new", "new"]), ("n2", [])]
    updated = base.updated({d: d for d in docs if d not in dropped}, added)
    fresh: BM25Index[str] = BM25Index(k1=1.2, b=0.6)
    for doc_id, tokens in [*((d, t) for d, t in docs.items() if d not in dropped), *added]:
        fresh.add(doc_id, tokens)
    fresh.build()
    assert len(updated) == len(fresh) == 59
    assert updated.avgdl == fresh.avgdl
    for query in (["w1", "new"], ["brand"], ["w5", "w7", "w9"], words[:10]):
        assert updated.top_k(query, 20) == fresh.top_k(query, 20)  # bit-identical scores
        assert updated.self_score(query) == fresh.self_score(query)
    assert base.top_k(["brand"], 5) == []  # the original is unchanged
    assert len(base) == 60


def test_updated_drops_terms_no_document_holds_any_more() -> None:
    index = _index({"a": "x shared", "b": "shared y", "c": "y z"})
    updated = index.updated({"a": "a"}, [])  # y and z (the last terms) lose every posting
    assert updated.top_k(["y", "z"], 5) == []
    assert updated.top_k(["x", "y"], 5) == _index({"a": "x shared"}).top_k(["x", "y"], 5)
    assert updated.idf("z") == _index({"a": "x shared"}).idf("z")  # as an unknown term
