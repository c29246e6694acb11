"""Chinese-aware tokens for keyword (BM25) search.

`tokenize` returns jieba words plus the character unigrams and bigrams of every CJK run.
Character n-grams need no dictionary and survive segmentation mistakes and new words
(product names, typos); words add the Latin and digit tokens ("wifi", "e3", "r3") and
longer Chinese words. Measured with BM25 on the retrieval dev sets
(`benchmarks/retrieval_eval.py`, R@1 / R@5 / MRR@10): words alone 0.065 / 0.204 / 0.124 on
BQ, uni+bigrams alone 0.077 / 0.229 / 0.145, both 0.075 / 0.234 / 0.145; on AFQMC 0.028 /
0.090 / 0.056, 0.029 / 0.111 / 0.065 and 0.032 / 0.116 / 0.068. Word tokens carry no
prefix, so a two-character word and the same bigram are one term counted twice; keeping
them apart ("w:" prefix) ranked the same within 0.004.

Text is normalised first: NFKC, lower case, traditional to simplified for common
characters and wording variants to one form (`knowledge.text.synonyms`, +0.021 R@5 on BQ).
Tried and not kept, each within 0.005 of this or worse on both sets: a question-template
stopword list (请问, 我想, 怎么, 可以 …; idf already discounts them), char n-grams only
within non-stopword runs or only within jieba words, character trigrams or skip-bigrams,
more stop characters, and word and char n-gram indexes fused by score.

jieba loads its dictionary (about a second) on first use, once, under a lock; its own
logging is quieted to warnings. Everything else here is a pure function.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import jieba

from knowledge.text.synonyms import canonical

log = logging.getLogger(__name__)

# CJK Unified Ideographs, Extension A and the compatibility block; enough for shop text.
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# A word token is kept when it has at least one letter, digit or ideograph.
_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Function words that carry no intent. Question words (怎么, 如何, 多久, 哪些, 为什么) are
# deliberately kept: they separate "怎么退货" from "退货要多久".
_STOPWORDS = """
    的 地 得 了 着 吗 呢 吧 啊 呀 哦 哈 嘛 么 哟 喔 嗯 呗 啦 哇
    和 与 及 或 跟 同 而 并 且 但 就 都 也 还 又 再 才 只 把 被 让 给 向 从 在 于 对 为
    是 有 个 这 那 我 你 您 他 她 它 我们 你们 他们 咱们 自己
    这个 那个 这样 那样 一个 一下 请问 请 麻烦 谢谢 您好 你好
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORDS.split())
# Single characters dropped from the unigrams: particles that are hardly ever part of a
# content word (unlike 地 in 地址 or 过 in 过期), so 退, 货, 票 … still match on their own.
STOP_CHARS: frozenset[str] = frozenset("的了吗呢吧啊呀哦嘛哟喔嗯啦哇")

_jieba_lock = threading.Lock()
_jieba: jieba.Tokenizer | None = None
_user_dicts: list[Path] = []


def _tokenizer() -> jieba.Tokenizer:
    """The process's jieba tokenizer, initialised on first use (thread-safe)."""
    global _jieba
    if _jieba is not None:
        return _jieba
    with _jieba_lock:
        if _jieba is None:
            # jieba logs "Building prefix dict..." at DEBUG on its own stderr handler.
            logging.getLogger("jieba").setLevel(logging.WARNING)
            tok = jieba.Tokenizer()
            tok.initialize()
            for path in _user_dicts:
                _load_dict(tok, path)
            _jieba = tok
    return _jieba


def load_user_dict(path: str | Path) -> None:
    """Add a jieba user dictionary (one `word [freq] [tag]` per line) for later calls.

    Load dictionaries before serving: a word added while another thread tokenizes may be
    seen by that call or not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jieba user dictionary not found: {path}")
    with _jieba_lock:
        _user_dicts.append(path)
        if _jieba is not None:
            _load_dict(_jieba, path)


def user_dicts() -> list[Path]:
    """The user dictionaries loaded so far, in order."""
    with _jieba_lock:
        return list(_user_dicts)


def _load_dict(tok: jieba.Tokenizer, path: Path) -> None:
    # Given a path, jieba opens the file and never closes it; hand it an open file instead.
    with path.open("rb") as f:
        tok.load_userdict(f)


def normalize(text: str, *, synonyms: bool = True) -> str:
    """NFKC (full-width letters and digits to ASCII), lower case, canonical wording.

    Wording variants (如何 -> 怎么, 帐 -> 账 …) become one form (`knowledge.text.synonyms`), the
    same for indexed text and queries; idempotent. `synonyms=False` skips that step (to
    measure it).
    """
    folded = unicodedata.normalize("NFKC", text).lower()
    return canonical(folded) if synonyms else folded


def words(text: str, *, synonyms: bool = True) -> list[str]:
    """jieba words of `text`, normalised, without stopwords, punctuation or spaces."""
    return _words(normalize(text, synonyms=synonyms))


def char_ngrams(text: str, *, synonyms: bool = True) -> list[str]:
    """Character unigrams (without particles) and bigrams of each CJK run of `text`."""
    return _char_ngrams(normalize(text, synonyms=synonyms))


def tokenize(text: str, *, synonyms: bool = True) -> list[str]:
    """BM25 tokens of `text`: `words` followed by `char_ngrams`."""
    normal = normalize(text, synonyms=synonyms)
    return _words(normal) + _char_ngrams(normal)


def word_frequency(word: str) -> tuple[int, int]:
    """How often `word` occurs in jieba's dictionary, and the dictionary's total count."""
    tok = _tokenizer()
    return tok.FREQ.get(word, 0), tok.total


def in_words(normal: str) -> list[bool]:
    """For each character of normalised text, whether jieba reads it as part of a
    dictionary word of two or more characters."""
    inside = [False] * len(normal)
    tok = _tokenizer()
    for word, start, end in tok.tokenize(normal):
        if end - start >= 2 and tok.FREQ.get(word, 0):
            inside[start:end] = [True] * (end - start)
    return inside


def tokenize_plain(text: str) -> list[str]:
    """`tokenize` without the synonym step (a baseline for the benchmarks)."""
    return tokenize(text, synonyms=False)


def tokenize_all(texts: Iterable[str]) -> list[list[str]]:
    """`tokenize` each text (convenience for indexing)."""
    return [tokenize(text) for text in texts]


def _words(normal: str) -> list[str]:
    out = []
    for word in _tokenizer().cut(normal):
        word = word.strip()
        if word and word not in STOPWORDS and _WORDLIKE.search(word):
            out.append(word)
    return out


def _char_ngrams(normal: str) -> list[str]:
    out: list[str] = []
    for run in _CJK_RUN.findall(normal):
        out.extend(ch for ch in run if ch not in STOP_CHARS)
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out
