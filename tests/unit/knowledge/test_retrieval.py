"""KeywordRetriever on the sample knowledge base in examples/knowledge."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from knowledge.base import Hit, Retriever
from knowledge.loaders import Chunk, FaqEntry
from knowledge.search.retrieval import (
    CHUNK_BM25,
    FAQ_BM25,
    BM25Params,
    KeywordRetriever,
    confidence,
)

SAMPLE = Path(__file__).resolve().parents[3] / "examples" / "knowledge"

# The agent uses hits at BOT_FAQ_MIN_SCORE (0.35); off-topic queries stay under
# OFF_TOPIC_MAX. Measured on the sample: on-topic FAQ queries score 0.52 to 1.0, the
# passages tested here 0.40 to 0.82, the off-topic queries 0.24 at most.
FAQ_MIN_SCORE = 0.35
OFF_TOPIC_MAX = 0.3

ON_TOPIC = {
    "我想退货怎么办": "怎么退货",
    "发票怎么开": "如何开发票",
    "退款多久到账": "退款多久到账",
    "怎么转人工": "怎么联系人工客服",
    "扫地机连不上wifi": "扫地机器人连不上Wi-Fi",
    "订单能改地址吗": "怎么修改收货地址",
    "你们支持货到付款吗": "支持哪些支付方式",
    "能开专票吗": "能开增值税专用发票吗",
    "退货运费谁承担": "退货运费谁出",
}
OFF_TOPIC = [
    "今天天气怎么样",
    "帮我写一首诗",
    "怎么做红烧肉",
    "帮我订一张去北京的机票",
    "明天会下雨吗",
]


@pytest.fixture(scope="module")
def retriever() -> KeywordRetriever:
    return KeywordRetriever.from_folder(SAMPLE)


def test_sample_knowledge_loads_cleanly(retriever: KeywordRetriever) -> None:
    assert retriever.failed == ()
    assert len(retriever.faqs) >= 25
    assert {c.source for c in retriever.chunks} == {"policies.md", "product_manual.md"}
    sections = {c.section for c in retriever.chunks}
    assert {"开机与关机", "联网", "保修", "7 天无理由退货", "发票", "会员积分"} <= sections


def test_it_is_a_retriever(retriever: KeywordRetriever) -> None:
    as_protocol: Retriever = retriever
    assert isinstance(as_protocol.search("退货", 1)[0], Hit)


@pytest.mark.parametrize(("query", "question"), ON_TOPIC.items())
def test_on_topic_queries_find_their_faq_with_confidence(
    retriever: KeywordRetriever, query: str, question: str
) -> None:
    faq = next(h for h in retriever.search(query, k=3) if h.answer is not None)
    assert faq.text == question
    assert faq.section == "FAQ"
    assert faq.source == "faq.csv"
    assert faq.answer
    assert faq.reply_text == faq.answer
    assert faq.score > FAQ_MIN_SCORE


@pytest.mark.parametrize(
    ("query", "question"), [("我想退货怎么办", "怎么退货"), ("发票怎么开", "如何开发票")]
)
def test_the_faq_comes_first(retriever: KeywordRetriever, query: str, question: str) -> None:
    top = retriever.search(query, k=5)[0]
    assert (top.text, top.answer is not None) == (question, True)


def test_a_policy_passage_may_outrank_an_faq_that_matches_less(
    retriever: KeywordRetriever,
) -> None:
    # "退货运费" is a policy heading word for word; the FAQ says "退货运费谁出".
    hits = retriever.search("退货运费谁承担", k=2)
    assert [(h.section, h.answer is None) for h in hits] == [("退货运费", True), ("FAQ", False)]


def test_returns_answer_is_the_returns_policy(retriever: KeywordRetriever) -> None:
    top = retriever.search("我想退货怎么办", k=1)[0]
    assert top.answer is not None
    assert "7 天无理由退货" in top.answer


@pytest.mark.parametrize(
    ("query", "source", "section"),
    [
        ("机器吸力变小了", "product_manual.md", "吸力变小、清扫不干净"),
        ("包装里有什么配件", "product_manual.md", "包装清单"),
        ("雷达被挡住了", "product_manual.md", "错误码说明"),
        ("私自拆机还保修吗", "product_manual.md", "保修"),
        ("大促期间发货慢吗", "policies.md", "发货时效"),
        ("换颜色可以吗", "policies.md", "换货"),
        ("退款到银行卡要几天", "policies.md", "退款时效"),
    ],
)
def test_passages_are_found_above_the_threshold(
    retriever: KeywordRetriever, query: str, source: str, section: str
) -> None:
    passage = next(h for h in retriever.search(query, k=5) if h.answer is None)
    assert (passage.source, passage.section) == (source, section)
    assert passage.reply_text == passage.text
    assert passage.score > FAQ_MIN_SCORE


@pytest.mark.parametrize("query", OFF_TOPIC)
def test_off_topic_queries_score_low(retriever: KeywordRetriever, query: str) -> None:
    hits = retriever.search(query, k=3)
    assert not hits or hits[0].score < OFF_TOPIC_MAX


def test_every_on_topic_query_outscores_every_off_topic_one(retriever: KeywordRetriever) -> None:
    on = min(retriever.search(q, 1)[0].score for q in ON_TOPIC)
    off = max((hits[0].score for q in OFF_TOPIC if (hits := retriever.search(q, 1))), default=0)
    assert on > off + 0.2


def test_repeating_an_faq_question_is_full_confidence(retriever: KeywordRetriever) -> None:
    assert retriever.search("保修多久", 1)[0].score == pytest.approx(1.0)
    assert retriever.faq_confidence("保修多久", _faq_no(retriever, "保修多久")) == pytest.approx(
        1.0
    )


def test_hits_are_sorted_bounded_and_unique(retriever: KeywordRetriever) -> None:
    for query in [*ON_TOPIC, *OFF_TOPIC, "退货", "扫地机器人"]:
        hits = retriever.search(query, k=5)
        assert len(hits) <= 5
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        keys = [(h.source, h.section, h.text) for h in hits]
        assert len(keys) == len(set(keys))


@pytest.mark.parametrize("query", ["", "？？？", "的了吗"])
def test_queries_without_tokens_find_nothing(retriever: KeywordRetriever, query: str) -> None:
    assert retriever.search(query) == []


def test_k_limits_the_hits(retriever: KeywordRetriever) -> None:
    assert len(retriever.search("退货", k=2)) == 2
    assert retriever.search("退货", k=0) == []


def test_faq_confidence_matches_search(retriever: KeywordRetriever) -> None:
    top = retriever.search("发票怎么开", 1)[0]
    no = _faq_no(retriever, top.text)
    assert retriever.faq_confidence("发票怎么开", no) == pytest.approx(top.score)


def test_concurrent_searches_agree_with_sequential_ones(retriever: KeywordRetriever) -> None:
    queries = [*ON_TOPIC, *OFF_TOPIC] * 20
    expected = [retriever.search(q) for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(retriever.search, queries)) == expected


def test_an_faq_entry_appears_once_even_when_several_questions_match() -> None:
    faqs = [
        FaqEntry("怎么退货", "退货答案", "f.csv", similar=("退货怎么退", "我要退货")),
        FaqEntry("怎么换货", "换货答案", "f.csv"),
    ]
    hits = KeywordRetriever(faqs=faqs).search("退货", k=5)
    assert [h.text for h in hits] == ["怎么退货", "怎么换货"]  # 换货 shares 货


def test_documents_only_and_empty_retrievers() -> None:
    chunks = [Chunk("电子发票会发送到邮箱。", "p.md", "发票", ("发票",))]
    assert KeywordRetriever(chunks=chunks).search("发票")[0].section == "发票"
    assert KeywordRetriever().search("发票") == []


@pytest.mark.parametrize(
    ("score", "self_score", "expected"),
    [(2.0, 4.0, 0.5), (5.0, 4.0, 1.0), (0.0, 4.0, 0.0), (1.0, 0.0, 0.0)],
)
def test_confidence_is_a_clamped_share(score: float, self_score: float, expected: float) -> None:
    assert confidence(score, self_score) == expected


def _faq_no(retriever: KeywordRetriever, question: str) -> int:
    return next(i for i, e in enumerate(retriever.faqs) if e.question == question)


def test_a_reworded_faq_question_is_still_a_direct_answer() -> None:
    # 如何/怎么, 还钱/还款, 帳/账 are one form to the index (knowledge.text.synonyms)
    faqs = [
        FaqEntry("怎么还款", "还款答案", "f.csv"),
        FaqEntry("账户怎么注销", "注销答案", "f.csv"),
        FaqEntry("怎么借款", "借款答案", "f.csv"),
    ]
    retriever = KeywordRetriever(faqs=faqs)
    for query, question in [("如何还钱", "怎么还款"), ("帳戶咋注销", "账户怎么注销")]:
        top = retriever.search(query, 1)[0]
        assert top.text == question
        assert top.score == pytest.approx(1.0)  # at or above BOT_FAQ_DIRECT_SCORE (0.8)


def test_faq_and_passage_indexes_take_their_own_bm25_parameters() -> None:
    faqs = [FaqEntry("退货运费谁出", "a", "f.csv"), FaqEntry("退货", "b", "f.csv")]
    chunks = [
        Chunk(text="退货运费由买家承担，质量问题除外，请保留凭证。", source="p.md", section="运费"),
        Chunk(text="退货请在七天内申请。", source="p.md", section="退货"),
    ]

    def scores(
        faq_bm25: BM25Params = FAQ_BM25, chunk_bm25: BM25Params = CHUNK_BM25
    ) -> tuple[list[float], list[float]]:
        retriever = KeywordRetriever(chunks, faqs, faq_bm25=faq_bm25, chunk_bm25=chunk_bm25)
        hits = retriever.search("退货运费", 4)
        faq = sorted(h.score for h in hits if h.answer is not None)
        passage = sorted(h.score for h in hits if h.answer is None)
        return faq, passage

    faq, passage = scores()
    # Without length normalisation a longer FAQ question scores differently, passages not.
    faq_b0, passage_same = scores(faq_bm25=BM25Params(1.5, 0.0))
    assert faq_b0 != faq
    assert passage_same == passage
    faq_same, passage_b0 = scores(chunk_bm25=BM25Params(1.5, 0.0))
    assert faq_same == faq
    assert passage_b0 != passage
    with pytest.raises(ValueError, match="0 <= b <= 1"):
        KeywordRetriever(faqs=faqs, chunk_bm25=BM25Params(1.5, 2.0))
