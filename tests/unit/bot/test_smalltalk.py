"""Small talk and question splitting (bot/agent/smalltalk.py, bot/agent/questions.py)."""

from __future__ import annotations

import time

import pytest

from bot.agent import questions, smalltalk
from bot.handoff.rules import wants_human


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("你好", smalltalk.GREETING),
        ("您好！", smalltalk.GREETING),
        ("在吗？", smalltalk.GREETING),
        ("hi", smalltalk.GREETING),
        ("Hello~", smalltalk.GREETING),
        ("你好，在吗", smalltalk.GREETING),
        ("谢谢", smalltalk.THANKS),
        ("多谢啦", smalltalk.THANKS),
        ("好的谢谢", smalltalk.THANKS),
        ("再见", smalltalk.GOODBYE),
        ("谢谢，拜拜", smalltalk.GOODBYE),
        ("你是谁", smalltalk.IDENTITY),
        ("你是机器人吗？", smalltalk.IDENTITY),
    ],
)
def test_whole_messages_of_small_talk_have_a_kind(text: str, kind: str) -> None:
    assert smalltalk.kind_of(text) == kind


@pytest.mark.parametrize(
    "text", ["你好，发票怎么开", "谢谢你们的退货政策", "再见面时能换货吗", "人工", "转人工", ""]
)
def test_a_message_with_anything_else_is_not_small_talk(text: str) -> None:
    assert smalltalk.kind_of(text) is None


def test_asking_for_a_person_stays_a_handoff_and_never_small_talk() -> None:
    for text in ("人工", "转人工", "你好，转人工"):
        assert wants_human(text)
        assert smalltalk.kind_of(text) is None


def test_a_leading_greeting_is_cut_off_the_question() -> None:
    assert smalltalk.strip_leading("你好，发票怎么开") == "发票怎么开"
    assert smalltalk.strip_leading("您好！在吗？运费多少") == "运费多少"
    # "请问" begins a question without a comma: its words stay.
    assert smalltalk.strip_leading("请问运费多少") == "请问运费多少"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("运费多少？发票怎么开？", ["运费多少？", "发票怎么开？"]),
        ("怎么退货，另外运费谁出", ["怎么退货", "运费谁出"]),
        ("保修多久 还有滤网多久换一次", ["保修多久", "滤网多久换一次"]),
        ("保修多久顺便问下能开专票吗", ["保修多久", "能开专票吗"]),
        # A burst (joined with "\n"): the greeting dropped, a statement is the next one's context.
        ("在吗\n扫地机连不上wifi\n怎么办", ["扫地机连不上wifi，怎么办"]),
        ("在吗\n运费多少\n发票怎么开", ["运费多少", "发票怎么开"]),
        # One question stays one, conjunction words inside it included.
        ("还有货吗", ["还有货吗"]),
        ("怎么退货", ["怎么退货"]),
        ("你好", []),
    ],
)
def test_a_turn_splits_into_its_questions(text: str, parts: list[str]) -> None:
    assert questions.split(text) == parts


def test_at_most_five_questions_the_rest_stays_with_the_last() -> None:
    text = "？".join(f"问题{n}是什么" for n in range(1, 9))
    parts = questions.split(text)
    assert len(parts) == questions.MAX_PARTS
    assert parts[-1].startswith("问题5是什么")
    assert parts[-1].endswith("问题8是什么")


def test_matching_is_bounded_on_long_hostile_text() -> None:
    hostile = "你好" * 50_000 + "？" * 50_000 + "另外" * 50_000
    start = time.perf_counter()
    assert smalltalk.kind_of(hostile) is None
    assert smalltalk.strip_leading(hostile).startswith("你好")
    assert questions.split(hostile) == [hostile]
    assert questions.split("另外" * 290 + "？" * 10) == []
    assert time.perf_counter() - start < 0.5


def test_two_questions_joined_by_a_comma_are_two() -> None:
    assert questions.split("几点能入住，押金要交多少") == ["几点能入住", "押金要交多少"]
    # A statement before the question stays its context.
    whole = "我订的房已经过了取消时间了，还能退吗"
    assert questions.split(whole) == [whole]


def test_questions_one_answer_covers_share_it() -> None:
    same = [
        questions.PartAnswer("降档几号生效", "次月1日。"),
        questions.PartAnswer("要钱吗", "次月1日。"),
    ]
    assert questions.numbered(same) == "次月1日。"
    mixed = [*same, questions.PartAnswer("能送火星吗")]
    assert questions.numbered(mixed) == (
        "1. 关于“降档几号生效”和“要钱吗”：次月1日。\n"
        f"2. 关于“能送火星吗”：{questions.UNANSWERED_PART}"
    )


def test_a_bare_topic_and_an_adjective_are_not_questions_of_their_own() -> None:
    assert questions.split("火车票\n开车了还能退吗") == ["火车票，开车了还能退吗"]
    moved = "搬家到另外一个城市了，宽带能移过去吗？"
    assert questions.split(moved) == [moved]
    assert questions.split("保修多久，另外运费多少") == ["保修多久", "运费多少"]


def test_a_short_question_after_several_statements_has_a_shorter_reading() -> None:
    # The burst's first line names the subject; the lines between are details. The shorter
    # reading drops them and the request opener (我要/我想/我家) of the first.
    assert questions.readings("我要改套餐\n改成39的\n啥时候能生效") == [
        ("我要改套餐，改成39的，啥时候能生效", "改套餐，啥时候能生效")
    ]
    assert questions.readings("在吗\n我想注销号码\n余额还有30多块\n能退吗") == [
        ("我想注销号码，余额还有30多块，能退吗", "注销号码，能退吗")
    ]
    # Statements only: the same statements without their openers.
    assert questions.readings("在吗\n我家宽带断了\n光猫灯是红的") == [
        ("我家宽带断了，光猫灯是红的", "宽带断了，光猫灯是红的")
    ]
    # One statement before the question, or none: nothing shorter to try.
    one = questions.readings("在吗\n扫地机连不上wifi\n怎么办")
    assert one == [("扫地机连不上wifi，怎么办", None)]
    assert questions.readings("我要改套餐怎么办") == [("我要改套餐怎么办", None)]
    whole = questions.split("我要改套餐\n改成39的\n啥时候能生效")
    assert whole == ["我要改套餐，改成39的，啥时候能生效"]


def test_a_tag_question_is_a_question_of_its_own() -> None:
    # "…对吧" asks for a yes; the follow-up after the comma is asked on its own.
    assert questions.split("套餐降档是次月生效对吧，降档有没有手续费") == [
        "套餐降档是次月生效对吧",
        "降档有没有手续费",
    ]
