"""FAQ sheets written back: a document's FAQ entries as the CSV that `bot kb add` and the
loaders read (question, answer, similar joined by ``|``), so an edited sheet is ingested
like an uploaded one."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from knowledge.models import FAQ, KnowledgeChunk

HEADER = ("question", "answer", "similar")


@dataclass(frozen=True)
class Entry:
    """One FAQ row: the standard question, its answer, the other ways people ask it."""

    question: str
    answer: str
    similar: tuple[str, ...] = ()


def entries(chunks: Iterable[KnowledgeChunk]) -> list[Entry]:
    """The FAQ entries among a document's chunks, in sheet order."""
    return [
        Entry(c.text, c.answer or "", tuple(s for s in c.similar.splitlines() if s.strip()))
        for c in chunks
        if c.kind == FAQ
    ]


def to_csv(rows: Iterable[Entry]) -> bytes:
    """The sheet as UTF-8 CSV (with a BOM, so a spreadsheet opens the Chinese as such)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for row in rows:
        # "|" and "｜" separate similar questions in the sheet: keep them out of a question.
        similar = "|".join(
            s.replace("|", "/").replace("｜", "/").strip() for s in row.similar if s.strip()
        )
        writer.writerow((_safe(row.question), _safe(row.answer), _safe(similar)))
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _safe(text: str) -> str:
    return formula_safe(text.strip())


def formula_safe(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
