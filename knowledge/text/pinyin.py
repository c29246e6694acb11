"""Pinyin syllables of Chinese text: homophone typos ("话废怎么冲" for 话费怎么充) sound alike.

Most typos of pinyin input methods are another character with the same syllable, so two
texts that differ only by such typos have the same toneless syllables. `syllables` gives
them per CJK character (pypinyin, phrase-aware within each run), folded the way fuzzy
input methods fold them (zh/ch/sh as z/c/s, -ng as -n), so the southern confusions match
too. Other characters are dropped: the syllable channel only compares Chinese.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pypinyin import lazy_pinyin

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_FOLD = (("zh", "z"), ("ch", "c"), ("sh", "s"))


def _fold(syllable: str) -> str:
    for a, b in _FOLD:
        if syllable.startswith(a):
            syllable = b + syllable[2:]
            break
    return syllable[:-1] if syllable.endswith("ng") else syllable


@lru_cache(maxsize=16384)
def _run(run: str, fold: bool) -> tuple[str, ...]:
    said = lazy_pinyin(run)
    if len(said) != len(run):  # never expected for a pure CJK run; stay aligned anyway
        said = [lazy_pinyin(ch)[0] for ch in run]
    return tuple(_fold(s) for s in said) if fold else tuple(said)


def runs(text: str, *, fold: bool = True) -> list[tuple[str, ...]]:
    """The syllables of each CJK run of `text`, one per character (`fold`: as fuzzy input
    methods fold them)."""
    return [_run(run, fold) for run in _CJK_RUN.findall(text)]


def syllables(text: str) -> list[str]:
    """The folded toneless syllables of the CJK characters of `text`, in order."""
    return [s for run in runs(text) for s in run]
