"""Which knowledge candidate answers a question, and how sure that is: one scale for FAQ
entries and passages.

The keyword confidence alone does not tell a right top hit from a wrong one (AUC 0.59 on
telecom), and FAQ and passage scores are measured against different references. So each
candidate the retriever returns gets a few features, and a logistic model
(`COEFFICIENTS`, fitted by `benchmarks/answer_fit.py`) turns them into the probability
that its text answers the question; the agent answers with the most probable candidate
when that probability reaches its threshold, and declines otherwise.

Features of a candidate (query `q`; the candidate's matched text `c`: an FAQ entry's
questions, a passage's heading and text), every share weighted by how telling each piece
of `q` is (idf from jieba's general word frequencies, so nothing is learnt from a knowledge
base or a question set). A piece of `q` is "heard" in a text that has it, or a piece with
the same pinyin (homophone typos: 话废 finds 话费, 怎么冲 finds 怎么充):

- ``score``: the retriever's confidence, ``gap``: how far below the best one it is;
- ``chars``: the share of `q`'s character bigrams (and Latin words) found in `c`;
  ``sound``: the share heard in `c`; ``singles``: the share of `q`'s characters (and Latin
  words: wifi) in `c`;
- ``faq``: 1 for an FAQ entry; ``asked``: the share of the pieces of the FAQ entry's
  closest question (a passage: of its heading, which says what it answers) heard in the
  query (a question that says much more asks something else); ``dice``: the best F1 of
  that share and the share of `q` heard in that question or heading;
- ``sentence``: the share of `q` heard in the best single sentence of what would be said
  (the FAQ answer; the passage, its heading prepended);
- ``rare``: the share heard in `c` with pieces most candidates share discounted;
- ``<name>_gap``: the feature minus the best candidate's value for the same question.

The model uses four of them (`COEFFICIENTS`): score, singles_gap, dice and sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from knowledge.base import Hit
from knowledge.text import pinyin
from knowledge.text.tokenize import STOP_CHARS, in_words, normalize, word_frequency

_BASE = ("score", "gap", "chars", "sound", "singles", "faq", "asked", "dice", "sentence", "rare")
# Each of these also as its distance below the best candidate's for the same question.
_RELATIVE = ("chars", "sound", "singles", "asked", "dice", "sentence", "rare")
FEATURES = (*_BASE, *(f"{name}_gap" for name in _RELATIVE))
# The model: the features kept (forward selection on the tuning sets, each set scored
# by a model fitted on the others; the rest added nothing there, docs/knowledge.md) and
# their weights, fitted by `benchmarks/answer_fit.py` (see its docstring). Refit with
# `--write`.
INTERCEPT = -3.027
COEFFICIENTS: dict[str, float] = {
    "score": 3.954,
    "singles_gap": 4.639,
    "dice": 3.027,
    "sentence": 3.460,
}
# How many of the retriever's hits are weighed.
CANDIDATES = 8
# Answer only at or above this probability (the right / wrong curve: docs/knowledge.md).
THRESHOLD = 0.5

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_LATIN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Judged:
    """A candidate with its features and the probability that it answers the question."""

    hit: Hit
    features: tuple[float, ...]
    probability: float


@dataclass(frozen=True, slots=True)
class _Text:
    """The pieces of one normalised text: character bigrams (a single character for a
    one-character run), their syllable pairs, characters and Latin words, each piece with
    its weight."""

    grams: dict[str, float]
    sounds: dict[str, tuple[str, ...]]
    singles: dict[str, float]
    latin: dict[str, float]


@lru_cache(maxsize=65536)
def _idf(word: str) -> float:
    """How telling `word` is: log(total / frequency) over jieba's dictionary."""
    freq, total = word_frequency(word)
    return math.log((total + 1) / (freq + 1))


def _gram_weight(gram: str) -> float:
    if len(gram) == 2 and word_frequency(gram)[0] == 0:
        # Not a word (it spans two): the mean of its characters'.
        return (_idf(gram[0]) + _idf(gram[1])) / 2
    return _idf(gram)


@lru_cache(maxsize=8192)
def _pieces(text: str) -> _Text:
    normal = normalize(text)
    grams: dict[str, float] = {}
    sounds: dict[str, tuple[str, ...]] = {}
    singles: dict[str, float] = {}
    for run, said in zip(_CJK_RUN.findall(normal), pinyin.runs(normal), strict=True):
        for ch in run:
            if ch not in STOP_CHARS:
                singles[ch] = _idf(ch)
        if len(run) == 1:
            if run not in STOP_CHARS:
                grams[run] = _idf(run)
                sounds[run] = said
            continue
        for i in range(len(run) - 1):
            gram = run[i : i + 2]
            grams[gram] = _gram_weight(gram)
            sounds[gram] = said[i : i + 2]
    latin = {w: _idf(w) for w in _LATIN.findall(normal)}
    return _Text(grams, sounds, singles, latin)


def _share(weights: dict[str, float], found: set[str]) -> float:
    total = sum(weights.values())
    return sum(w for g, w in weights.items() if g in found) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class _Matched:
    grams: set[str]
    sounds: set[tuple[str, ...]]
    singles: set[str]


@lru_cache(maxsize=4096)
def _matched(texts: tuple[str, ...]) -> _Matched:
    grams: set[str] = set()
    sounds: set[tuple[str, ...]] = set()
    singles: set[str] = set()
    for text in texts:
        p = _pieces(text)
        grams.update(p.grams, p.latin)
        sounds.update(p.sounds.values())
        singles.update(p.singles)
    return _Matched(grams, sounds, singles)


def _texts(hit: Hit) -> tuple[str, ...]:
    if hit.answer is not None:
        return (hit.text, *hit.questions)
    return (hit.section, hit.text)


def _heard(q: _Text, m: _Matched) -> set[str]:
    """The pieces of `q` that `m` has, by characters or by sound."""
    found = {g for g in q.grams if g in m.grams or q.sounds[g] in m.sounds}
    return found | (set(q.latin) & m.grams)


def _f1(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def _features(query: str, hit: Hit, best_score: float) -> tuple[float, ...]:
    """The features of candidate `hit` for `query` (`best_score`: the top hit's score)."""
    q = _pieces(query)
    m = _matched(_texts(hit))
    weights = {**q.grams, **q.latin}
    chars = _share(weights, m.grams)
    sound = _share(weights, _heard(q, m))
    singles = _share({**q.singles, **q.latin}, m.singles | (set(q.latin) & m.grams))
    asked = dice = 0.0
    said = _matched((query,))
    # An FAQ entry's questions; a passage's heading says what it answers.
    for text in (hit.text, *hit.questions) if hit.answer is not None else (hit.section,):
        p = _pieces(text)
        precision = _share({**p.grams, **p.latin}, _heard(p, said))
        asked = max(asked, precision)
        dice = max(dice, _f1(precision, _share(weights, _heard(q, _matched((text,))))))
    heading = "" if hit.answer is not None else hit.section
    sentence = max(
        (_share(weights, _heard(q, _matched((heading, s)))) for s in sentences(hit.reply_text)),
        default=0.0,
    )
    faq = 1.0 if hit.answer is not None else 0.0
    return (hit.score, hit.score - best_score, chars, sound, singles, faq, asked, dice, sentence)


def features(query: str, hits: Sequence[Hit]) -> list[tuple[float, ...]]:
    """The features of each of `hits` (the candidates for `query`), in order."""
    if not hits:
        return []
    best = max(h.score for h in hits)
    base = [_features(query, hit, best) for hit in hits]
    # Pieces most candidates share tell them apart least (this knowledge base's 宽带).
    q = _pieces(query)
    weights = {**q.grams, **q.latin}
    heard = [_heard(q, _matched(_texts(hit))) for hit in hits]
    n = len(hits)
    rare_weights = {
        g: w * math.log((n + 1) / (sum(g in h for h in heard) + 0.5)) for g, w in weights.items()
    }
    base = [(*row, _share(rare_weights, h)) for row, h in zip(base, heard, strict=True)]
    at = [_BASE.index(name) for name in _RELATIVE]
    tops = [max(row[i] for row in base) for i in at]
    return [(*row, *(row[i] - top for i, top in zip(at, tops, strict=True))) for row in base]


_AT = {name: i for i, name in enumerate(FEATURES)}


def probability(values: Sequence[float]) -> float:
    """The model's probability that a candidate with these features (FEATURES) answers."""
    z = INTERCEPT + sum(c * values[_AT[name]] for name, c in COEFFICIENTS.items())
    return 1.0 / (1.0 + math.exp(-z))


def judge(query: str, hits: Sequence[Hit]) -> list[Judged]:
    """Every candidate judged, most probable first."""
    judged = [
        Judged(hit, values, probability(values))
        for hit, values in zip(hits, features(query, hits), strict=True)
    ]
    judged.sort(key=lambda j: j.probability, reverse=True)
    return judged


# A passage this long or shorter is said whole; a longer one by its most relevant sentences.
EXCERPT_CHARS = 240
_SENTENCE_END = frozenset("。！？!?；;\n")


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence end (the ends kept), blank pieces dropped."""
    out: list[str] = []
    start = 0
    for i, ch in enumerate(text):
        if ch in _SENTENCE_END:
            out.append(text[start : i + 1])
            start = i + 1
    out.append(text[start:])
    return [s for s in out if s.strip()]


def excerpt(query: str, passage: str, limit: int = EXCERPT_CHARS) -> str:
    """What of `passage` answers `query`: all of it when short, else its sentences that
    share most with the question (by weighted bigram coverage, sound alike included),
    best first until `limit` characters, said in the passage's order."""
    text = passage.strip()
    if len(text) <= limit:
        return text
    parts = sentences(text)
    q = _pieces(query)
    weights = {**q.grams, **q.latin}

    def share(sentence: str) -> float:
        m = _matched((sentence,))
        heard = {g for g in q.grams if g in m.grams or q.sounds[g] in m.sounds}
        return _share(weights, heard | (set(q.latin) & m.grams))

    ranked = sorted(range(len(parts)), key=lambda i: share(parts[i]), reverse=True)
    kept: list[int] = []
    size = 0
    for i in ranked:
        if kept and size + len(parts[i]) > limit:
            break
        kept.append(i)
        size += len(parts[i])
    return "".join(parts[i] for i in sorted(kept)).strip()


def respelled(query: str, hits: Sequence[Hit]) -> str:
    """`query` (normalised) with each character the candidates' words say it was meant as:
    a pair of characters that is no word (话废) and that the candidates never write, where
    they write a word with the same pinyin, tones aside, differing in one character (话费),
    becomes theirs, unless the character replaced is part of a word the question writes.
    "话废怎么冲" becomes "话费怎么冲" when a candidate says 话费. Unchanged when nothing sounds
    like a candidate's words."""
    grams: set[str] = set()
    heard: dict[tuple[str, ...], list[str]] = {}
    for hit in hits:
        for text in (*_texts(hit), hit.reply_text):
            normal = normalize(text)
            for run, said in zip(
                _CJK_RUN.findall(normal), pinyin.runs(normal, fold=False), strict=True
            ):
                for i in range(len(run) - 1):
                    gram = run[i : i + 2]
                    if gram not in grams:
                        grams.add(gram)
                        heard.setdefault(said[i : i + 2], []).append(gram)
    normal = normalize(query)
    chars = list(normal)
    worded = in_words(normal)
    for match, said in zip(_CJK_RUN.finditer(normal), pinyin.runs(normal, fold=False), strict=True):
        run, start = match.group(), match.start()
        for i in range(len(run) - 1):
            gram = run[i : i + 2]
            if gram in grams or word_frequency(gram)[0]:
                continue
            fixes = [
                g
                for g in heard.get(said[i : i + 2], ())
                if (g[0] == gram[0]) != (g[1] == gram[1]) and word_frequency(g)[0]
            ]
            # A character of a word the question writes stays (总部 in 总部在哪 is no 总不).
            if len(fixes) == 1 and not worded[start + i + (fixes[0][0] == gram[0])]:
                chars[start + i : start + i + 2] = fixes[0]
    return "".join(chars)
