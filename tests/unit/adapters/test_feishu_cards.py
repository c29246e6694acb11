"""The pure parts of Feishu streaming cards: card bodies, the throttle, the group mention."""

from __future__ import annotations

import json

import pytest

from adapters.cards import Throttle
from adapters.feishu import cards
from adapters.feishu.adapter import MAX_POST_BYTES
from adapters.feishu.streaming import FeishuStreamingAdapter, shown_text
from bot.domain import Platform, Reply


def test_card_json_is_a_streaming_card_2_0_with_one_markdown_element() -> None:
    card = json.loads(cards.card_json("您好"))
    assert card["schema"] == "2.0"
    assert card["config"]["streaming_mode"] is True
    assert card["config"]["update_multi"] is True  # 300302 otherwise
    assert card["body"]["elements"] == [
        {"tag": "markdown", "element_id": cards.ELEMENT_ID, "content": "您好"}
    ]
    # Element ids: letters first, at most 20 characters.
    assert cards.ELEMENT_ID[0].isalpha()
    assert len(cards.ELEMENT_ID) <= 20


def test_closing_settings_turn_streaming_mode_off() -> None:
    assert json.loads(cards.closing_settings()) == {"config": {"streaming_mode": False}}


@pytest.mark.parametrize(
    ("per_s", "interval"), [(3, 1 / 3), (10, 0.1), (50, 0.1), (0.5, 2.0), (0, 10.0)]
)
def test_the_throttle_never_goes_above_ten_per_second(per_s: float, interval: float) -> None:
    assert Throttle(per_s).interval == pytest.approx(interval)


def test_the_throttle_lets_one_update_through_per_interval() -> None:
    throttle = Throttle(4)  # every 0.25 s
    times = [0.0, 0.1, 0.2, 0.25, 0.3, 0.49, 0.5, 0.9, 2.0]
    allowed = [t for t in times if throttle.due(t)]
    assert allowed == [0.0, 0.25, 0.5, 0.9, 2.0]


def test_at_most_ten_updates_in_any_second_at_the_highest_setting() -> None:
    throttle = Throttle(100)
    allowed = [t / 1000 for t in range(0, 3000, 7) if throttle.due(t / 1000)]
    for start in allowed:
        assert len([t for t in allowed if start <= t < start + 1.0]) <= 10


def _reply(is_group: bool) -> Reply:
    return Reply(
        platform=Platform.FEISHU,
        app="default",
        conversation_id="oc_1",
        recipient_id="ou_asker",
        text="",
        in_reply_to="om_1",
        is_group=is_group,
    )


def test_a_group_card_mentions_the_asker_and_a_p2p_card_does_not() -> None:
    assert shown_text(_reply(True), "答案") == "<at id=ou_asker></at> 答案"
    assert shown_text(_reply(False), "答案") == "答案"


def test_split_keeps_markdown_and_stays_under_the_post_limit() -> None:
    adapter = FeishuStreamingAdapter(
        app_id="a",
        app_secret="s",
        verification_token="v",
        encrypt_key="",
        api_base="http://x",
        tokens=None,
    )
    assert adapter.split("**加粗** 文本") == ["**加粗** 文本"]
    parts = adapter.split("很长的回答。" * 3000)
    assert len(parts) > 1
    assert all(len(p.encode()) <= MAX_POST_BYTES for p in parts)


def test_the_throttle_says_how_long_until_the_next_update() -> None:
    throttle = Throttle(4)
    assert throttle.wait(0.0) == 0.0
    assert throttle.due(0.0)
    assert throttle.wait(0.1) == pytest.approx(0.15)
    assert throttle.wait(0.3) == 0.0
