"""The text of a file a customer sent: its type read from the bytes, parsed by the knowledge
loaders within page, row and character caps.

No Redis, no network: bot/pipeline/files.py runs `main` in a child process
(``python -m bot.pipeline.file_text``) with a memory limit and a deadline, so a hostile or
huge document can be killed without stalling the worker's event loop or its threads.

The bytes decide the type, never the name: a ``.pdf`` that is a ZIP is refused as a
mismatch, a workbook renamed ``.txt`` too. A name with another suffix (or none) takes the
type the bytes say. A PDF without a text layer (a scan) yields pictures of its first pages
when `scan_pages` > 0, for a vision model to read.
"""

from __future__ import annotations

import io
import json
import resource
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from bot.llm import images
from knowledge.loaders.base import LoadError, decode
from knowledge.text.chunking import Section

# Why a file's text could not be read (`Attachment.error` of a file; answers in files.py).
NOT_SUPPORTED = "file_type"  # a type we do not read (old .doc/.xls, a ZIP, a binary)
MISMATCH = "file_mismatch"  # the name says one type, the bytes another
CORRUPT = "file_corrupt"
ENCRYPTED = "file_encrypted"
EMPTY = "file_empty"  # readable, but no text in it
SCANNED = "file_scanned"  # a PDF without a text layer, and no vision model to read it
TOO_LARGE = "file_too_large"  # unpacks to more than the limit (a ZIP bomb), or ran out of memory
TOO_SLOW = "file_too_slow"  # parsing did not finish in time

PDF, DOCX, XLSX, TEXT, IMAGE = "pdf", "docx", "xlsx", "text", "image"
_ZIP, _OLE = "zip", "ole"
# What a name's suffix promises; other suffixes promise nothing and the bytes decide.
DECLARED = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".xlsx": XLSX,
    ".txt": TEXT,
    ".csv": TEXT,
    ".md": TEXT,
    ".markdown": TEXT,
    ".jpg": IMAGE,
    ".jpeg": IMAGE,
    ".png": IMAGE,
    ".gif": IMAGE,
    ".bmp": IMAGE,
    ".webp": IMAGE,
}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Word 97-2003 .doc, Excel .xls
_TEXT_PROBE = 64 * 1024


class FileError(Exception):
    """A file whose text cannot be given; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Limits:
    max_pages: int = 20
    max_chars: int = 20_000
    max_rows: int = 2_000
    max_unzipped_bytes: int = 100 * 1024 * 1024
    scan_pages: int = 0  # pictures of a scanned PDF's pages to write (0: a scan is refused)


@dataclass(slots=True)
class Extracted:
    """What a file held: its type, its text (capped) and, for a scan, pictures of pages."""

    kind: str
    text: str = ""
    pages: int = 0  # pages in the PDF (0 for other types)
    read_pages: int = 0  # pages read (at most Limits.max_pages)
    truncated: bool = False  # the text was cut at Limits.max_chars (or the row cap)
    scans: list[str] = field(default_factory=list)  # page pictures written for a scan


def sniff(data: bytes, *, max_unzipped_bytes: int) -> str:
    """The type the bytes are: pdf, docx, xlsx, image, text; or zip/ole for what we refuse."""
    if b"%PDF-" in data[:1024]:  # readers allow bytes before the header
        return PDF
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data, max_unzipped_bytes)
    if data.startswith(_OLE_MAGIC):
        return _OLE
    if images.sniff(data):
        return IMAGE
    try:
        decode(data[:_TEXT_PROBE])
    except LoadError:
        # A cut in the middle of a multi-byte character fails too: try the whole file.
        try:
            decode(data)
        except LoadError as exc:
            raise FileError(NOT_SUPPORTED, "not a document type we read") from exc
    return TEXT


def _zip_kind(data: bytes, max_unzipped_bytes: int) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise FileError(CORRUPT, f"damaged ZIP container: {type(exc).__name__}") from exc
    if sum(m.file_size for m in members) > max_unzipped_bytes:
        raise FileError(TOO_LARGE, f"unpacks to more than {max_unzipped_bytes} bytes")
    names = {m.filename for m in members}
    if "word/document.xml" in names:
        return DOCX
    if "xl/workbook.xml" in names:
        return XLSX
    return _ZIP


def kind_of(data: bytes, name: str, limits: Limits) -> str:
    """The file's type, checked against what its name promises."""
    kind = sniff(data, max_unzipped_bytes=limits.max_unzipped_bytes)
    declared = DECLARED.get(PurePath(name).suffix.lower(), "")
    if declared and declared != kind:
        raise FileError(MISMATCH, f"named {declared.upper()} but the bytes are {kind}")
    if kind == _OLE:
        raise FileError(NOT_SUPPORTED, "an old Word/Excel (97-2003) file, or a protected one")
    if kind == _ZIP:
        raise FileError(NOT_SUPPORTED, "a ZIP archive that is no DOCX or XLSX")
    return kind


def extract(data: bytes, name: str, limits: Limits, scan_stem: Path | None = None) -> Extracted:
    """The text of a file's bytes (see the module); FileError when there is none to give."""
    kind = kind_of(data, name, limits)
    title = PurePath(name).stem or "文件"
    if kind == IMAGE:
        return Extracted(kind)  # a picture sent as a file: the vision step reads it
    if kind == TEXT:
        return _capped(Extracted(kind), decode(data, name), limits)
    try:
        if kind == PDF:
            return _pdf(data, name, title, limits, scan_stem)
        if kind == DOCX:
            from knowledge.loaders.docx import parse_docx

            sections = parse_docx(data, name=name, title=title)
            return _capped(Extracted(kind), render(sections, title), limits)
        from knowledge.loaders.sheet import parse_xlsx

        sections = parse_xlsx(data, name=name, title=title, max_rows=limits.max_rows)
        return _capped(Extracted(kind), render(sections, title), limits)
    except LoadError as exc:
        reason = ENCRYPTED if "encrypted" in exc.reason else CORRUPT
        raise FileError(reason, exc.reason) from exc


def _pdf(data: bytes, name: str, title: str, limits: Limits, scan_stem: Path | None) -> Extracted:
    from pypdf import PdfReader

    from knowledge.loaders.pdf import NoTextLayerError, parse_pdf

    try:
        sections = parse_pdf(data, name=name, title=title, max_pages=limits.max_pages)
    except NoTextLayerError as exc:
        reader = PdfReader(io.BytesIO(data))
        pages = len(reader.pages)
        if limits.scan_pages <= 0 or scan_stem is None:
            raise FileError(SCANNED, exc.reason) from exc
        scans = _page_pictures(reader, min(pages, limits.scan_pages), scan_stem)
        if not scans:
            raise FileError(SCANNED, "no text layer and no page pictures") from exc
        return Extracted(PDF, pages=pages, read_pages=len(scans), scans=scans)
    pages = len(PdfReader(io.BytesIO(data)).pages)
    found = Extracted(PDF, pages=pages, read_pages=min(pages, limits.max_pages))
    return _capped(found, render(sections, title), limits)


def _page_pictures(reader: Any, count: int, stem: Path) -> list[str]:
    """The largest picture on each of the first `count` pages, saved as ``{stem}.pageN.img``
    (a scanner puts one picture per page); pages without one are skipped."""
    saved = []
    for number in range(count):
        try:
            found = list(reader.pages[number].images)
        except Exception:  # noqa: S112 - pypdf raises many types for one damaged image
            continue
        if not found:
            continue
        biggest = max(found, key=lambda image: len(image.data))
        data = biggest.data
        if not images.sniff(data):
            buffer = io.BytesIO()
            biggest.image.save(buffer, format="PNG")  # raw or JBIG2 pixels: re-encoded
            data = buffer.getvalue()
        dest = stem.with_name(f"{stem.name}.page{number + 1}.img")
        dest.write_bytes(data)
        saved.append(str(dest))
    return saved


def render(sections: list[Section], title: str) -> str:
    """Sections as plain text: a heading line when the trail changes, then the blocks (no
    line for the file's own name, which the loaders give text before any heading)."""
    lines: list[str] = []
    trail: tuple[str, ...] = (title,)
    for section in sections:
        if section.headings != trail:
            trail = section.headings
            lines.append("# " + " / ".join(trail))
        lines.extend(block.text for block in section.blocks)
    return "\n".join(lines)


def _capped(found: Extracted, text: str, limits: Limits) -> Extracted:
    text = text.strip()
    if not text:
        raise FileError(EMPTY, "no text in the file")
    if len(text) > limits.max_chars:
        found.text, found.truncated = text[: limits.max_chars], True
    else:
        found.text = text
    return found


def _peak_bytes() -> int:
    """This process's own peak resident memory.

    Linux's ru_maxrss carries the parent's peak across fork and exec (a worker of 600 MiB
    would make every parse look big), so the mm's own high-water mark comes first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> int:
    """Child entry: JSON arguments on stdin, one JSON result on stdout (see files.py)."""
    args = json.loads(sys.stdin.read())
    memory = int(args.get("memory_bytes") or 0)
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    limits = Limits(**args["limits"])
    scan_stem = Path(args["scan_stem"]) if args.get("scan_stem") else None
    try:
        data = Path(args["path"]).read_bytes()
        found = extract(data, args["name"], limits, scan_stem)
        result: dict[str, Any] = {"ok": True, **asdict(found)}
    except FileError as exc:
        reason = exc.reason
        if reason == CORRUPT and memory > 0 and _peak_bytes() * 2 >= memory:
            # Parsers report running out of memory as a damaged document (lxml: "unknown
            # error"): a file that took half the limit was too big, not corrupt.
            reason = TOO_LARGE
        result = {"ok": False, "reason": reason, "detail": exc.detail[:300]}
    except MemoryError:
        result = {"ok": False, "reason": TOO_LARGE, "detail": "out of memory while parsing"}
    except OSError as exc:
        result = {"ok": False, "reason": CORRUPT, "detail": f"unreadable: {type(exc).__name__}"}
    sys.stdout.write(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
