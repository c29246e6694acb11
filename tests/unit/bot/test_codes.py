"""Codes in a question decide which hits may answer it (bot/agent/codes.py)."""

from __future__ import annotations

import time

from bot.agent.codes import codes_in, reconcile, written_for
from knowledge.base import Hit

E1_FAQ = Hit("扫地机器人显示错误码E1", "faq.csv", "", 0.5, answer="E1 表示左轮或右轮被卡住。")
TABLE = Hit("- E1：左轮被卡住。\n- E2：滚刷被缠绕。", "manual.md", "错误码说明", 0.2)
SHIPPING = Hit("江浙沪一般 1 到 2 天送达", "policies.md", "配送", 0.3)


def test_codes_are_found_whatever_their_case_and_padding() -> None:
    assert codes_in("扫地机报e02了，USB3 接口也坏了") == {("E", 2), ("USB", 3)}
    assert codes_in("F-12") == {("F", 12)}


def test_words_numbers_and_prices_are_not_codes() -> None:
    assert codes_in("满 99 元包邮，2.4GHz Wi-Fi，618 活动") == set()
    assert codes_in("iPhone15") == set()  # letters then digits inside a longer word


def test_an_faq_about_another_code_never_answers() -> None:
    hits = reconcile("扫地机报E2什么意思", [E1_FAQ, SHIPPING, TABLE], min_score=0.35)
    assert E1_FAQ not in hits
    assert TABLE in hits  # names E2 (and E1): kept at its own score
    assert [h.source for h in hits] == ["policies.md", "manual.md"]


def test_an_faq_written_for_the_asked_code_becomes_relevant() -> None:
    low = Hit(E1_FAQ.text, "faq.csv", "", 0.1, answer=E1_FAQ.answer)
    hits = reconcile("扫地机报E1是什么情况", [SHIPPING, low], min_score=0.35)
    assert hits[0].source == "faq.csv"
    assert hits[0].score == 0.35


def test_without_codes_nothing_changes() -> None:
    hits = [E1_FAQ, SHIPPING]
    assert reconcile("运费怎么算", hits, min_score=0.35) is hits


def test_hostile_text_is_scanned_in_linear_time() -> None:
    text = "A" * 200_000 + "1" * 200_000 + "-" * 100_000
    started = time.perf_counter()
    codes_in(text)
    assert time.perf_counter() - started < 1.0


def test_the_faq_written_for_the_asked_code_is_found_among_the_hits() -> None:
    e1 = Hit("报E1怎么办", "faq.csv", "FAQ", 0.6, "清理滚刷。")
    e2 = Hit("提示错误怎么办", "faq.csv", "FAQ", 0.2, "检查尘盒。", ("报E2什么意思",))
    passage = Hit("E2：尘盒未装好。", "manual.md", "故障", 0.5)
    assert written_for("扫地机报E2什么意思", [e1, passage, e2]) is e2
    assert written_for("扫地机报E3什么意思", [e1, passage, e2]) is None
    assert written_for("扫地机坏了", [e1, e2]) is None
