"""FAQ sheets: CSV, XLSX (first sheet) and JSON lines, one `FaqEntry` per row.

CSV and XLSX need a header row naming the columns ``question``, ``answer`` and optionally
``similar`` (or 问题/标准问题, 答案/回答, 相似问题/相似问法), in any order. Similar questions
are separated by ``|``, ``｜`` or line breaks; JSON lines may also give them as a list::

    {"question": "怎么退货", "answer": "签收后 7 天内可申请。", "similar": ["我要退货"]}

Rows without a question or an answer are skipped with a warning.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

from knowledge.loaders.base import FaqEntry, LoadError, decode

log = logging.getLogger(__name__)

_COLUMN_ALIASES = {
    "question": ("question", "问题", "标准问题", "标准问"),
    "answer": ("answer", "答案", "回答", "标准答案"),
    "similar": ("similar", "相似问题", "相似问法", "相似问"),
}
_SIMILAR_SEPARATORS = ("|", "｜", "\n")


def _columns(header: Sequence[str], name: str, kind: str) -> dict[str, int]:
    normalized = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for column, aliases in _COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in normalized:
                found[column] = normalized.index(alias)
                break
    missing = [c for c in ("question", "answer") if c not in found]
    if missing:
        raise LoadError(
            name,
            f"FAQ {kind} needs a header row with question,answer[,similar]; "
            f"missing {', '.join(missing)} (header was: {','.join(header)[:80]})",
        )
    return found


def _split_similar(value: str | Sequence[str]) -> list[str]:
    parts = [value] if isinstance(value, str) else list(value)
    for separator in _SIMILAR_SEPARATORS:
        parts = [piece for part in parts for piece in part.split(separator)]
    return parts


def _entry(
    question: str, answer: str, similar: str | Sequence[str], source: str, where: str
) -> FaqEntry | None:
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        log.warning("%s %s: skipped, question or answer is empty", source, where)
        return None
    others = tuple(
        dict.fromkeys(s.strip() for s in _split_similar(similar) if s.strip() not in ("", question))
    )
    return FaqEntry(question=question, answer=answer, source=source, similar=others)


def faq_from_rows(
    rows: Iterable[Sequence[str]], source: str, kind: str = "sheet"
) -> list[FaqEntry]:
    """FAQ entries from a header row and data rows of cell strings."""
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None:
        raise LoadError(source, "empty FAQ file")
    cols = _columns(header, source, kind)
    entries = []
    for line_no, row in enumerate(iterator, start=2):
        if not any(cell.strip() for cell in row):
            continue

        def cell(column: str, row: Sequence[str] = row) -> str:
            index = cols.get(column)
            return row[index] if index is not None and index < len(row) else ""

        entry = _entry(cell("question"), cell("answer"), cell("similar"), source, f"row {line_no}")
        if entry is not None:
            entries.append(entry)
    return entries


def parse_faq_csv(text: str, source: str) -> list[FaqEntry]:
    """FAQ entries from CSV text; rows without a question or an answer are skipped."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise LoadError(source, f"malformed CSV: {exc}") from exc
    return faq_from_rows(rows, source, "CSV")


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores 7 as 7.0
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def parse_faq_xlsx(data: bytes, source: str) -> list[FaqEntry]:
    """FAQ entries from the first sheet of an XLSX workbook's bytes."""
    # Imported here so that deployments without XLSX sheets never load openpyxl.
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise LoadError(source, f"corrupt XLSX: {type(exc).__name__}: {exc}"[:200]) from exc
    try:
        if not workbook.worksheets:
            raise LoadError(source, "XLSX has no worksheet")
        sheet = workbook.worksheets[0]
        rows = [
            [_cell_text(v) for v in row]
            for row in sheet.iter_rows(values_only=True)
            if row is not None
        ]
    finally:
        workbook.close()
    return faq_from_rows(rows, source, "XLSX")


def _field(record: dict[str, Any], column: str) -> Any:
    for alias in _COLUMN_ALIASES[column]:
        if alias in record:
            return record[alias]
    return ""


def parse_faq_jsonl(text: str, source: str) -> list[FaqEntry]:
    """FAQ entries from JSON lines, one object per line; blank lines are ignored."""
    entries = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(source, f"line {line_no}: invalid JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise LoadError(source, f"line {line_no}: expected a JSON object")
        question, answer, similar = (_field(record, c) for c in ("question", "answer", "similar"))
        if not isinstance(similar, str | list) or not all(
            isinstance(s, str) for s in ([similar] if isinstance(similar, str) else similar)
        ):
            raise LoadError(source, f"line {line_no}: similar must be a string or strings")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise LoadError(source, f"line {line_no}: question and answer must be strings")
        entry = _entry(question, answer, similar, source, f"line {line_no}")
        if entry is not None:
            entries.append(entry)
    return entries


def parse_faq(data: bytes, *, name: str, suffix: str) -> list[FaqEntry]:
    """FAQ entries of a file's bytes, by its suffix (``.csv``, ``.xlsx``, ``.jsonl``).

    Raises:
        LoadError: unreadable, or no row with both a question and an answer.
    """
    if suffix == ".xlsx":
        entries = parse_faq_xlsx(data, name)
    elif suffix == ".jsonl":
        entries = parse_faq_jsonl(decode(data, name), name)
    else:
        entries = parse_faq_csv(decode(data, name), name)
    if not entries:
        raise LoadError(name, "no FAQ rows with both a question and an answer")
    return entries
