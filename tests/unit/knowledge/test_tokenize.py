"""Tokens for BM25: jieba words plus CJK character unigrams and bigrams."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from knowledge.text import tokenize as tok


def test_char_ngrams_are_unigrams_then_bigrams_of_each_cjk_run() -> None:
    assert tok.char_ngrams("退货运费") == ["退", "货", "运", "费", "退货", "货运", "运费"]


def test_runs_are_not_bridged_across_latin_or_punctuation() -> None:
    grams = tok.char_ngrams("开发票，R3扫地")
    assert "票扫" not in grams
    assert "票r" not in grams
    assert grams == ["开", "发", "票", "开发", "发票", "扫", "地", "扫地"]


def test_particles_are_dropped_from_unigrams_but_kept_in_bigrams() -> None:
    grams = tok.char_ngrams("能退吗")
    assert "吗" not in grams
    assert "退吗" in grams


def test_no_char_ngrams_without_cjk() -> None:
    assert tok.char_ngrams("wifi 2.4GHz") == []


def test_words_are_normalised_and_filtered() -> None:
    words = tok.words("我的ＷｉＦｉ连不上了！！")
    assert "wifi" in words  # full-width folded to ASCII, lower-cased
    assert "的" not in words
    assert "我" not in words
    assert not any(w in {"！", "!", " "} for w in words)


def test_question_words_are_kept() -> None:
    assert "多长时间" in tok.words("退款多长时间到账")
    assert "怎么" in tok.words("怎么退货")


def test_wording_variants_give_the_same_tokens() -> None:
    # normalize maps variants to one form (knowledge.text.synonyms), for index and query alike
    assert tok.tokenize("如何还钱") == tok.tokenize("怎么还款")
    assert tok.tokenize("退款多久到帐") == tok.tokenize("退款多长时间到账")
    assert tok.tokenize("帳號登陸不成功") == tok.tokenize("账号登录失败")


def test_tokenize_is_words_followed_by_char_ngrams() -> None:
    text = "发票怎么开"
    assert tok.tokenize(text) == tok.words(text) + tok.char_ngrams(text)


@pytest.mark.parametrize("text", ["", "   ", "，。！？", "\n\t"])
def test_nothing_to_match_gives_no_tokens(text: str) -> None:
    assert tok.tokenize(text) == []


def test_user_dictionary_adds_words(tmp_path: Path) -> None:
    word = "蓝鲸扫拖宝"  # a made-up product name jieba cannot know
    assert word not in tok.words(f"{word}怎么用")
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text(f"{word} 1000 nz\n", encoding="utf-8")
    tok.load_user_dict(user_dict)
    assert word in tok.words(f"{word}怎么用")


def test_missing_user_dictionary_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="user dictionary"):
        tok.load_user_dict(tmp_path / "absent.txt")


def test_concurrent_calls_agree_with_sequential_ones() -> None:
    texts = [f"第{i}号订单的发票怎么开？扫地机器人R{i}连不上Wi-Fi" for i in range(200)]
    expected = [tok.tokenize(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(tok.tokenize, texts)) == expected
