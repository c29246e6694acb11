"""Codes in a question (错误码 E2, 型号 X10, 接口 USB3) decide which passages may answer it.

Keyword scores barely tell "E1" from "E2": both are one short token in a long passage, so
"扫地机报E2什么意思" scored the FAQ about E1 above the minimum and got its answer — a wrong
answer, worse than none. A code is exact evidence either way: a passage that names the
asked code is relevant whatever its score; one that names other codes of the same family
and not the asked one is about something else.
"""

from __future__ import annotations

import dataclasses
import re

from knowledge.base import Hit

# Letters then digits (E2, e02, F-12, USB3), not inside a longer ASCII word or number.
# No nested quantifiers: linear on any input.
_CODE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{1,3})-?([0-9]{1,4})(?![0-9])")


def codes_in(text: str) -> set[tuple[str, int]]:
    """The codes in `text` as (letters upper-cased, number): "e02" and "E2" are one code."""
    return {(letters.upper(), int(digits)) for letters, digits in _CODE.findall(text)}


def reconcile(question: str, hits: list[Hit], min_score: float) -> list[Hit]:
    """`hits` reordered by what the question's codes say about them (unchanged without codes).

    An FAQ entry whose question names an asked code is raised to at least `min_score`
    (relevant): it was written for that code. A passage naming it keeps its score — a
    product model (R3) is named all over its manual, so naming it proves little. A hit
    naming codes of the same family (same letters) but none of the asked ones is dropped.
    """
    asked = codes_in(question)
    if not asked:
        return hits
    families = {letters for letters, _ in asked}
    kept: list[Hit] = []
    for hit in hits:
        named = codes_in(hit.text) | codes_in(hit.answer or "")
        if hit.answer is not None and codes_in(hit.text) & asked:
            kept.append(dataclasses.replace(hit, score=max(hit.score, min_score)))
        elif named & asked:
            kept.append(hit)
        elif not any(letters in families for letters, _ in named):
            kept.append(hit)  # says nothing about such codes: the score decides
    kept.sort(key=lambda h: h.score, reverse=True)
    return kept


def written_for(question: str, hits: list[Hit]) -> Hit | None:
    """The first FAQ entry among `hits` whose questions name a code `question` asks about
    (the FAQ about E2 for "报E2什么意思"), or None."""
    asked = codes_in(question)
    if not asked:
        return None
    for hit in hits:
        if hit.answer is not None and any(codes_in(q) & asked for q in (hit.text, *hit.questions)):
            return hit
    return None
