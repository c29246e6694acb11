"""The token estimate and the restart commands of bot/agent/memory.py."""

from __future__ import annotations

import pytest

from bot.agent import memory


def test_token_estimate_counts_cjk_characters_and_a_fraction_of_the_rest() -> None:
    assert memory.estimate_tokens("") == 0
    assert memory.estimate_tokens("怎么退货") == 4
    assert memory.estimate_tokens("你好，请问。") == 6  # full-width punctuation counts as CJK
    assert memory.estimate_tokens("order 12345") == 4  # 11 characters * 0.3, rounded up
    assert memory.estimate_tokens("订单A123") == 2 + 2
    assert memory.turn_tokens("怎么退货") == 4 + memory.TURN_OVERHEAD_TOKENS


@pytest.mark.parametrize(
    "text",
    ["重新开始", " 重新开始！", "重新开始对话", "新对话", "/new", "/NEW ", "／new", "/reset"],
)
def test_restart_phrases_are_recognised(text: str) -> None:
    assert memory.is_reset_text(text)


@pytest.mark.parametrize(
    "text", ["new", "我想重新开始下单", "/newbie", "开始", "重新开始吧我的订单"]
)
def test_other_texts_do_not_reset(text: str) -> None:
    assert not memory.is_reset_text(text)
