"""The answer judge's pieces: sound-alike matching, excerpts, one scale for FAQ and passage."""

from __future__ import annotations

from bot.agent import judge
from knowledge.base import Hit
from knowledge.text import pinyin


def test_homophones_have_the_same_syllables() -> None:
    assert pinyin.syllables("话废怎么冲") == pinyin.syllables("话费怎么充")
    # Fuzzy input folds zh/ch/sh and -ng: 宽代 and 宽带 alike, 申 and 生 alike.
    assert pinyin.syllables("宽代") == pinyin.syllables("宽带")
    assert pinyin.syllables("申请") == pinyin.syllables("生请")
    assert pinyin.syllables("wifi 5G") == []


def test_a_typo_is_found_by_sound_not_by_characters() -> None:
    faq = Hit("怎么充值话费", "faq.csv", "FAQ", 0.3, "在App充值。", ("话费怎么充",))
    chars, sound = (judge.FEATURES.index(n) for n in ("chars", "sound"))
    (values,) = judge.features("话废怎么冲", [faq])
    assert values[sound] > values[chars]
    assert values[sound] == 1.0


def test_a_long_passage_is_said_by_its_relevant_sentences_in_order() -> None:
    passage = (
        "补卡费10元，当场取卡，原号码不变。"
        "全国任一营业厅都可以补卡，异地补卡费用相同。"
        "非机主本人代办的，需要携带机主身份证原件、代办人身份证原件和机主签字的授权书。"
        "停机保号每月5元，期限1到12个月，保号期满后号码自动恢复为正常状态。"
        "携号转出需在网满120天、无欠费、不在合约期内，携转完成后积分全部作废。"
    )
    said = judge.excerpt("能在外地补卡吗", passage, limit=60)
    assert said.startswith("补卡费10元")
    assert "异地补卡费用相同" in said
    assert "携号转出" not in said
    assert judge.excerpt("补卡", "补卡费10元。") == "补卡费10元。"


def test_candidates_are_ranked_most_probable_first() -> None:
    near = Hit("积分有效期多久", "faq.csv", "FAQ", 0.5, "当年有效。")
    far = Hit("保修多久", "faq.csv", "FAQ", 0.5, "一年。")
    judged = judge.judge("积分多久过期", [far, near])
    assert [j.hit for j in judged] == [near, far]
    assert 0.0 < judged[1].probability < judged[0].probability < 1.0


def test_a_question_typed_by_sound_is_respelled_in_the_candidates_words() -> None:
    faq = Hit("怎么充值话费", "faq.csv", "FAQ", 0.1, "在App充值。", ("怎么交话费",))
    assert judge.respelled("话废怎么冲", [faq]) == "话费怎么冲"
    # A word the question writes stays, even when a candidate has a word sounding alike.
    boss = Hit("不在服务时间怎么办", "faq.csv", "FAQ", 0.1, "请留言。")
    assert judge.respelled("公司总部在哪个城市", [boss]) == "公司总部在哪个城市"
    assert judge.respelled("话废怎么冲", []) == "话废怎么冲"
