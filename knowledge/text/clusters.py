"""Group near-identical questions ("运费多少" / "运费是多少钱"): greedy clustering by the
overlap of character bigrams (Dice coefficient), cheap enough for a few thousand questions
on a page load."""

from __future__ import annotations

import re
from collections.abc import Sequence

DEFAULT_SIMILARITY = 0.5
_WORD = re.compile(r"[^\W_]+")


def bigrams(text: str) -> frozenset[str]:
    runs = _WORD.findall(text.lower())
    grams = {run[i : i + 2] for run in runs for i in range(len(run) - 1)}
    return frozenset(grams or runs)  # a one-character question is its own "bigram"


def cluster(texts: Sequence[str], *, similarity: float = DEFAULT_SIMILARITY) -> list[list[int]]:
    """Indexes of `texts` grouped by bigram Dice similarity (2|A∩B| / (|A|+|B|)), biggest
    groups first.

    Each text joins the first group whose first text is similar enough, so the result is
    stable for a given order (pass the newest first to keep the newest as representative).
    """
    groups: list[tuple[frozenset[str], list[int]]] = []
    for i, text in enumerate(texts):
        grams = bigrams(text)
        for head, members in groups:
            size = len(head) + len(grams)
            if size and 2 * len(head & grams) / size >= similarity:
                members.append(i)
                break
        else:
            groups.append((grams, [i]))
    return sorted((members for _, members in groups), key=len, reverse=True)
