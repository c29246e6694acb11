"""Small real knowledge files, built at test time: PDF by hand, DOCX and XLSX by their libraries."""

from __future__ import annotations

import io
from pathlib import Path

import docx
import openpyxl
from pypdf import PdfReader, PdfWriter

# Helvetica is one of the 14 standard fonts every reader has: no font program needed.
_LATIN_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
# STSong-Light is a standard Adobe CJK font (Adobe-GB1), addressed through the predefined
# UniGB-UTF16-H CMap: the text is plain UTF-16BE and no font program is embedded.
_CJK_FONTS = [
    b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UTF16-H"
    b" /DescendantFonts [4 0 R] >>",
    b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light"
    b" /CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >>"
    b" /FontDescriptor 5 0 R >>",
    b"<< /Type /FontDescriptor /FontName /STSong-Light /Flags 4 /FontBBox [0 -200 1000 900]"
    b" /ItalicAngle 0 /Ascent 880 /Descent -120 /CapHeight 880 /StemV 93 >>",
]


def _pdf_string(line: str, *, cjk: bool) -> bytes:
    if cjk:
        return b"<" + line.encode("utf-16-be").hex().upper().encode() + b">"
    escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def make_pdf(pages: list[list[str]], *, cjk: bool = False) -> bytes:
    """A valid PDF whose pages show `pages`' lines as text (no lines: a page like a scan)."""
    fonts = _CJK_FONTS if cjk else [_LATIN_FONT]
    first_page = 3 + len(fonts)  # objects: 1 catalog, 2 page tree, 3… fonts, then pages
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(len(pages)))
        + b"] /Count %d >>" % len(pages),
        *fonts,
    ]
    for i, lines in enumerate(pages):
        content = b"".join(
            b"BT /F1 12 Tf 72 %d Td %s Tj ET\n" % (720 - 20 * n, _pdf_string(line, cjk=cjk))
            for n, line in enumerate(lines)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (first_page + 2 * i + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypt_pdf(data: bytes, *, user_password: str, owner_password: str) -> bytes:
    """`data` encrypted with AES-256 (RC4 would warn: cryptography deprecated ARC4)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(path: Path) -> Path:
    """A Chinese manual: a title, nested headings, paragraphs and a table with a merged cell."""
    document = docx.Document()
    document.add_paragraph("封面说明：本文件仅供内部使用。")
    document.add_heading("R3 路由器手册", level=1)
    document.add_paragraph("本手册介绍 R3 的安装和保修。")
    document.add_heading("安装", level=2)
    document.add_paragraph("第一步，接通电源。第二步，连接网线。")
    document.add_paragraph("指示灯变绿后即可上网。")
    document.add_heading("保修", level=2)
    document.add_paragraph("保修政策如下表：")
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(
        table.rows,
        [("部件", "保修期", "说明"), ("主机", "2 年", "人为损坏除外"), ("电源", "1 年", "")],
        strict=True,
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    merged = table.cell(2, 1).merge(table.cell(2, 2))
    merged.text = "1 年，仅限换新"
    document.add_paragraph("超出保修期的维修需付费。")
    document.save(str(path))
    return path


def make_xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A workbook whose first sheet holds `rows`, plus a second sheet that must be ignored."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "FAQ"
    for row in rows:
        sheet.append(row)
    workbook.create_sheet("备注").append(["question", "answer"])
    workbook.save(str(path))
    return path
