"""XLSX workbooks as text: every sheet a section, its rows as ``cell | cell`` lines.

The FAQ loader (`faq`) reads a sheet of questions and answers; this one reads any workbook
(an invoice, a price list) for a person or a model to look at. openpyxl in read-only mode
streams the rows, so `max_rows` bounds the work as well as the text, and formulas show their
last computed value (`data_only`), as Excel displays them.
"""

from __future__ import annotations

import io
import zipfile

from knowledge.loaders.base import LoadError
from knowledge.loaders.faq import _cell_text
from knowledge.text.chunking import Block, Section


def parse_xlsx(
    data: bytes, *, name: str, title: str, max_rows: int = 2000, max_sheets: int = 20
) -> list[Section]:
    """One section per sheet (named ``title · sheet``), at most `max_rows` rows in all.

    Raises:
        LoadError: not a readable XLSX workbook.
    """
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise LoadError(name, f"corrupt XLSX: {type(exc).__name__}: {exc}"[:200]) from exc
    sections: list[Section] = []
    left = max_rows
    try:
        for sheet in workbook.worksheets[:max_sheets]:
            lines: list[str] = []
            for row in sheet.iter_rows(values_only=True):
                if left <= 0:
                    break
                cells = [" ".join(_cell_text(v).split()) for v in row or ()]
                while cells and not cells[-1]:
                    cells.pop()
                if any(cells):
                    lines.append(" | ".join(cells))
                    left -= 1
            if lines:
                block = Block("\n".join(lines), table=True, header_rows=1)
                sections.append(Section(headings=(f"{title} · {sheet.title}",), blocks=(block,)))
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LoadError(name, f"corrupt XLSX: {type(exc).__name__}: {exc}"[:200]) from exc
    finally:
        workbook.close()
    return sections
