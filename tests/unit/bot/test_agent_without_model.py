"""The agent with no model over the sample knowledge: small talk and several questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.agent import questions, smalltalk
from bot.agent.agent import HUMAN_FOLLOW_UP_TEXT, Agent
from bot.domain import SOURCES_PREFIX, InboundMessage, Platform
from bot.errors import LLMUnavailableError
from knowledge.search.retrieval import KeywordRetriever
from tests.integration.conftest import SAMPLE_KB, faq_answer

TELECOM_KB = Path(__file__).resolve().parents[3] / "benchmarks/data/cs/telecom/knowledge"


@pytest.fixture(scope="module")
def retriever() -> KeywordRetriever:
    return KeywordRetriever.from_folder(SAMPLE_KB)


def _message(text: str) -> InboundMessage:
    return InboundMessage(Platform.WEB, "default", "e1", "c1", "u1", text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("你好", smalltalk.GREETING),
        ("在吗", smalltalk.GREETING),
        ("谢谢", smalltalk.THANKS),
        ("再见", smalltalk.GOODBYE),
        ("你是机器人吗", smalltalk.IDENTITY),
    ],
)
async def test_small_talk_gets_its_text_never_the_decline(retriever, text: str, kind: str) -> None:
    answer = await Agent(None, retriever).reply([], _message(text))
    assert answer.text == smalltalk.DEFAULT_TEXTS[kind]
    assert answer.backend == "smalltalk"
    assert answer.confidence is None  # not a low-confidence knowledge turn


async def test_small_talk_texts_are_configurable(retriever) -> None:
    texts = smalltalk.SmallTalkTexts(greeting="亲，您好呀～")
    agent = Agent(None, retriever, small_talk=texts)
    assert (await agent.reply([], _message("你好"))).text == "亲，您好呀～"
    assert (await agent.reply([], _message("谢谢"))).text == smalltalk.DEFAULT_TEXTS["thanks"]


async def test_a_greeting_before_a_question_answers_the_question(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("你好，发票怎么开"))
    assert answer.text == faq_answer("如何开发票")
    assert answer.backend == "faq"


async def test_a_single_question_is_answered_as_before(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("怎么退货"))
    assert answer.text == faq_answer("怎么退货")
    declined = await Agent(None, retriever).reply([], _message("你们卖手机吗"))
    assert declined.text == HUMAN_FOLLOW_UP_TEXT


async def test_two_questions_are_answered_numbered_in_one_reply(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("运费多少？发票怎么开？"))
    first, second = answer.text.split("\n")
    assert first.startswith("1. 关于“运费多少”")
    assert first.endswith(faq_answer("运费怎么算"))
    assert second.startswith("2. 关于“发票怎么开”")
    assert second.endswith(faq_answer("如何开发票"))
    assert answer.outcome == "knowledge"


async def test_the_part_it_cannot_answer_is_left_to_a_person(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("保修多久？你们卖手机吗？"))
    first, second = answer.text.split("\n")
    assert first.endswith(faq_answer("保修多久"))
    assert second == f"2. 关于“你们卖手机吗”：{questions.UNANSWERED_PART}"


async def test_nothing_answerable_is_one_plain_decline(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("你们卖手机吗？能送到火星吗？"))
    assert answer.text == questions.NONE_ANSWERED
    assert answer.outcome == "declined"


async def test_a_coalesced_burst_is_answered_like_one_message(retriever) -> None:
    # bot/pipeline/coalesce.py joins a burst's texts with "\n".
    answer = await Agent(None, retriever).reply([], _message("在吗\n运费多少\n发票怎么开"))
    assert answer.text.count("\n") == 1
    assert faq_answer("运费怎么算") in answer.text
    assert faq_answer("如何开发票") in answer.text
    context = await Agent(None, retriever).reply([], _message("在吗\n扫地机连不上wifi\n怎么办"))
    assert "2.4GHz" in context.text
    assert "1. " not in context.text


async def test_an_order_question_among_others_is_asked_of_the_order_backend(retriever) -> None:
    async def orders(ctx, text: str) -> str | None:
        return "订单 QH202401010001 已发货。" if "QH" in text else None

    agent = Agent(None, retriever, without_model=orders)
    answer = await agent.reply([], _message("QH202401010001到哪了？另外运费多少？"))
    first, second = answer.text.split("\n")
    assert first.endswith("订单 QH202401010001 已发货。")
    assert second.endswith(faq_answer("运费怎么算"))


class _Down:
    """A model that always fails (every backend down)."""

    name = "down"

    async def complete(self, messages, **kwargs):
        raise LLMUnavailableError("model down")


async def test_when_every_model_fails_small_talk_still_gets_its_text(retriever) -> None:
    answer = await Agent(_Down(), retriever).reply([], _message("谢谢"))
    assert answer.text == smalltalk.DEFAULT_TEXTS[smalltalk.THANKS]
    assert answer.degraded


async def test_a_homophone_typo_still_finds_the_faq(retriever) -> None:
    # 发漂 (fa piao) is how a pinyin keyboard misspells 发票.
    answer = await Agent(None, retriever).reply([], _message("发漂怎么开"))
    assert answer.text == faq_answer("如何开发票")
    assert answer.outcome == "knowledge"


async def test_a_passage_answer_says_its_sentences_and_names_its_source(retriever) -> None:
    answer = await Agent(None, retriever).reply([], _message("积分有效期多久"))
    said, source = answer.text.split(SOURCES_PREFIX)
    assert "积分有效期为获得当年及下一年的 12 月 31 日" in said
    assert source == "policies.md · 会员积分"
    assert [s.label for s in answer.citations] == [source]
    assert answer.outcome == "knowledge"


async def test_a_better_passage_wins_over_a_weaker_faq(tmp_path) -> None:
    # The FAQ shares 多久 with the question; the passage answers it. The old policy took
    # any FAQ above the minimum before a passage, and said the warranty.
    (tmp_path / "faq.csv").write_text(
        "question,answer,similar\n"
        "保修多久,整机保修一年。,保修期多长时间|坏了保修吗\n"
        "怎么开发票,在订单详情点击申请开票。,发票怎么开\n",
        encoding="utf-8",
    )
    (tmp_path / "policies.md").write_text(
        "# 会员规则\n\n## 会员积分\n\n每消费 1 元累计 1 积分。"
        "积分有效期为获得当年及下一年的 12 月 31 日，过期自动清零。\n",
        encoding="utf-8",
    )
    agent = Agent(None, KeywordRetriever.from_folder(tmp_path))
    answer = await agent.reply([], _message("积分有效期多久"))
    assert "12 月 31 日" in answer.text
    assert "保修" not in answer.text
    assert answer.text.endswith("policies.md · 会员积分")
    # Out of scope for both: declined, not the closest-sounding entry.
    declined = await agent.reply([], _message("你们的会员能转让给家人吗"))
    assert declined.text == HUMAN_FOLLOW_UP_TEXT


async def test_a_burst_nothing_answers_whole_is_asked_with_its_first_line() -> None:
    # Telecom's knowledge: the joined burst matches nothing well enough; its first line and
    # question ("改套餐，啥时候能生效") find the rule for changing plans.
    agent = Agent(None, KeywordRetriever.from_folder(TELECOM_KB))
    whole = await agent.reply([], _message("我要改套餐，改成39的，啥时候能生效"))
    assert whole.text == HUMAN_FOLLOW_UP_TEXT
    burst = await agent.reply([], _message("我要改套餐\n改成39的\n啥时候能生效"))
    assert "次月1日生效" in burst.text
    # A part of several questions gets the same second try.
    two = await agent.reply([], _message("怎么查余额？\n我要改套餐\n改成39的\n啥时候能生效"))
    assert two.text.startswith("1. 关于“怎么查余额”")
    assert "2. 关于“我要改套餐，改成39的，啥时候能生效”：套餐变更默认次月1日生效" in two.text


async def test_the_order_backend_sees_the_lines_a_shorter_reading_leaves_out(tmp_path) -> None:
    # Nothing answers the whole burst; "改套餐，啥时候生效" is the FAQ word for word. The
    # order number is in the line left out: the order backend is asked with the whole
    # message before the FAQ is said.
    (tmp_path / "faq.csv").write_text(
        "question,answer,similar\n改套餐啥时候生效,套餐变更次月1日生效。,套餐变更什么时候生效\n",
        encoding="utf-8",
    )
    retriever = KeywordRetriever.from_folder(tmp_path)
    burst = "我要改套餐\n单号YF123456上个月办的那个流量包\n啥时候生效"
    without_orders = await Agent(None, retriever).reply([], _message(burst))
    assert without_orders.text == "套餐变更次月1日生效。"

    async def orders(ctx, text: str) -> str | None:
        return "订单 YF123456 的套餐变更已受理。" if "YF123456" in text else None

    answer = await Agent(None, retriever, without_model=orders).reply([], _message(burst))
    assert answer.text == "订单 YF123456 的套餐变更已受理。"
