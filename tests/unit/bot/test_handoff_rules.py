"""The handoff triggers that read the customer's words (bot/handoff/rules.py)."""

from __future__ import annotations

import pytest

from bot.handoff import rules


@pytest.mark.parametrize(
    "text",
    [
        "转人工",
        "转 人工！",
        "我要人工",
        "人工",
        "人工客服在吗",
        "帮我找人工",
        "能不能接人工",
        "转接人工服务",
        "我想和真人说话",
        "human",
        "Agent",
        "I want to talk to a human, please",
        "real person please",
    ],
)
def test_requests_for_a_person_are_recognised(text: str) -> None:
    assert rules.wants_human(text)


@pytest.mark.parametrize(
    "text",
    ["人工智能是什么", "人工费怎么算", "不用转人工了，谢谢", "别转人工", "怎么退货", "", "？？？"],
)
def test_other_messages_are_not_requests(text: str) -> None:
    assert not rules.wants_human(text)


def test_configured_phrases_add_to_the_defaults() -> None:
    extra = rules.keywords("找经理，要客服主管、 ")
    assert extra == ("找经理", "要客服主管")
    assert rules.wants_human("我要找经理！", extra)
    assert not rules.wants_human("我要找经理！")


@pytest.mark.parametrize("text", ["结束人工", "/bot", "好的，结束人工服务吧", "转机器人"])
def test_release_commands(text: str) -> None:
    assert rules.wants_release(text)


def test_release_is_not_a_question_about_it() -> None:
    assert not rules.wants_release("人工客服几点下班")


def test_anger_defaults_and_configured_lists() -> None:
    assert rules.is_angry("你们就是骗子！")
    assert rules.is_angry("我要投诉")
    assert not rules.is_angry("请问怎么退货")
    custom = rules.keywords("离谱")
    assert rules.is_angry("太离谱了", custom)
    assert not rules.is_angry("我要投诉", custom)


def test_repeats_compare_normalised_text() -> None:
    same = ["我的快递到哪了", "我的快递到哪了？", "我的 快递 到哪了！！"]
    assert rules.is_repeat(same, 3)
    assert not rules.is_repeat(same[:2], 3)  # only twice so far
    assert not rules.is_repeat(["怎么退货", "我的快递到哪了", "我的快递到哪了"], 3)
    # Nearly the same (one character differs) counts; a different question does not.
    assert rules.is_repeat(
        ["我的快递到底到哪里了", "我的快递到底到哪了", "我的快递到底到哪里了"], 3
    )
    assert not rules.is_repeat(["", "", ""], 3)
