"""The operator's synonyms: what a pair may be (one-line reasons), and how a query uses them."""

from __future__ import annotations

import pytest

from knowledge.synonym_table import MAX_CHARS, SynonymError, Table, check, parse_lines
from knowledge.text.tokenize import tokenize

STORED = {"扫地机": "扫地机器人", "扫地宝": "扫地机器人"}


@pytest.mark.parametrize(
    ("variant", "standard", "reason"),
    [
        ("", "扫地机器人", "must both be given"),
        ("扫拖机", "  ", "must both be given"),
        ("扫拖机", "扫拖机", "the same word"),
        ("ＡＢＣ", "abc", "the same word"),  # full width and case fold to one form
        ("咋", "怎么", "the same word"),  # the built-in list already maps it
        ("扫" * (MAX_CHARS + 1), "扫地机器人", f"longer than {MAX_CHARS}"),
        ("扫 地机", "扫地机器人", "one word each"),
        ("扫地机", "扫地机器人", "already a variant of '扫地机器人'"),
        ("小扫", "扫地机", "itself a variant of '扫地机器人'"),  # a chain
        ("扫地机器人", "扫地机", "itself a variant of '扫地机器人'"),  # a cycle
        ("扫地机器人", "机器人", "standard word of other variants"),
    ],
)
def test_a_bad_pair_is_one_line_saying_why(variant: str, standard: str, reason: str) -> None:
    with pytest.raises(SynonymError, match=reason) as caught:
        check(variant, standard, STORED)
    assert "\n" not in str(caught.value)


def test_a_good_pair_is_stored_normalised() -> None:
    assert check(" 洗碗宝 ", "洗碗机", STORED) == ("洗碗宝", "洗碗机")
    assert check("帐号君", "账户", {}) == ("账号君", "账户")  # the built-in 帐 -> 账 first


def test_file_lines() -> None:
    lines = ["# nicknames", "", "扫地机=扫地机器人", " 洗碗宝 = 洗碗机 "]
    assert parse_lines(lines) == [(3, "扫地机", "扫地机器人"), (4, "洗碗宝 ", " 洗碗机")]
    with pytest.raises(SynonymError, match="line 2"):
        parse_lines(["a=b", "no equals sign"])


def test_a_query_gets_the_other_forms_tokens_once() -> None:
    table = Table(STORED)
    assert table.alternatives("扫地宝怎么充电") == ["扫地机器人", "扫地机"]
    # The standard word is matched whole, not as the variant inside it.
    assert sorted(table.alternatives("扫地机器人怎么充电")) == ["扫地宝", "扫地机"]
    said = tokenize("扫地宝怎么充电")
    tokens = table.expand("扫地宝怎么充电", tokenize)
    assert tokens[: len(said)] == said
    added = tokens[len(said) :]
    assert {"机器", "器人"} <= set(added)
    assert len(added) == len(set(added))
    assert not set(added) & set(said)
    assert table.expand("发票怎么开", tokenize) == tokenize("发票怎么开")
    assert Table().expand("扫地宝", tokenize) == tokenize("扫地宝")


def test_the_judge_reads_a_passage_in_the_customers_words() -> None:
    table = Table(STORED)
    assert table.in_words_of("扫地宝怎么充电", "扫地机器人的充电座") == "扫地宝的充电座"
    assert table.in_words_of("扫地宝怎么充电", "扫地机没电了") == "扫地宝没电了"
    said_both = table.in_words_of("扫地宝和扫地机器人", "扫地机器人和扫地机")
    assert said_both == "扫地机器人和扫地宝"  # forms the customer said are kept
    assert table.in_words_of("发票怎么开", "扫地机器人的充电座") == "扫地机器人的充电座"
