"""Canonical wording for BM25: variants map to one form, idempotently."""

from __future__ import annotations

import pytest

from knowledge.text.synonyms import SYNONYMS, canonical


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("如何开发票", "怎么开发票"),
        ("咋办才能开通", "怎么办才能开通"),
        ("为啥还钱失败", "为什么还款失败"),
        ("可不可以更换手机号码", "能否修改手机号"),
        ("帐户登陆不成功", "账户登录失败"),
        ("請問花唄還款", "请问花呗还款"),  # traditional characters folded first
        ("怎么退货", "怎么退货"),  # already canonical
    ],
)
def test_variants_become_the_canonical_form(text: str, expected: str) -> None:
    assert canonical(text) == expected


def test_longer_variants_win_over_their_parts() -> None:
    # 能不能 is one variant, not 能 + 不能 -> 能无法
    assert canonical("能不能退") == "能否退"


def test_canonical_is_idempotent_on_every_form() -> None:
    # tokenize normalises text that may already be normalised: no output may hold a key
    for variant, form in SYNONYMS.items():
        assert canonical(canonical(variant)) == canonical(variant) == form
        assert canonical(form) == form


def test_words_that_merely_contain_a_short_variant_are_left_alone() -> None:
    assert canonical("我不了解这个规则") == "我不了解这个规则"
    assert canonical("支付宝余额") == "支付宝余额"
