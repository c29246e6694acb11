"""Load knowledge files: documents as chunks, FAQ sheets as entries; one bad file fails alone.

Documents (cut into `Chunk`s by `knowledge.text.chunking`, headings as context):

- ``.md``/``.markdown``/``.txt`` (`text`): ATX headings, pipe tables.
- ``.pdf`` (`pdf`): the text layer; encrypted or scanned PDFs are refused.
- ``.docx`` (`docx`): paragraphs, ``Heading N`` styles, tables.
- ``.html``/``.htm`` (`html`): visible text, ``h1``…``h6``, tables.

FAQ sheets (`faq`), one `FaqEntry` per row: ``.csv``, ``.xlsx``, ``.jsonl`` with the
columns question, answer and optionally similar (or 问题, 答案, 相似问题).

Text files may be UTF-8 (with or without BOM), UTF-16 with BOM, or GBK/GB18030 (what Excel
and Notepad on Chinese Windows save). Every failure — unreadable, too large
(`MAX_FILE_BYTES`), corrupt, encrypted, unsupported type — is a `LoadError` naming the
file and the reason; `load_folder` logs it, lists it in `LoadResult.failed` and goes on.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from knowledge.loaders.base import (
    MAX_FILE_BYTES,
    FaqEntry,
    LoadError,
    LoadResult,
    decode,
    read_bytes,
    read_text,
)
from knowledge.loaders.faq import parse_faq, parse_faq_csv
from knowledge.loaders.text import split_sections
from knowledge.text.chunking import (
    DEFAULT_MAX_CHARS,
    DEFAULT_OVERLAP_CHARS,
    Chunk,
    Section,
    chunk_sections,
    chunk_text,
    split_sentences,
)

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_OVERLAP_CHARS",
    "DOCUMENT_SUFFIXES",
    "FAQ_SUFFIXES",
    "MAX_FILE_BYTES",
    "Chunk",
    "FaqEntry",
    "LoadError",
    "LoadResult",
    "chunk_text",
    "decode",
    "load_document",
    "load_faq",
    "load_faq_csv",
    "load_file",
    "load_folder",
    "parse_faq_csv",
    "read_text",
    "split_sections",
    "split_sentences",
]

log = logging.getLogger(__name__)

DocumentParser = Callable[..., list[Section]]

# The one place a suffix picks a parser: "module:function" in this package, imported on
# first use so that loading Markdown never pays for pypdf, python-docx or openpyxl.
_DOCUMENT_PARSERS = {
    ".md": "text:parse_markdown",
    ".markdown": "text:parse_markdown",
    ".txt": "text:parse_markdown",
    ".pdf": "pdf:parse_pdf",
    ".docx": "docx:parse_docx",
    ".html": "html:parse_html",
    ".htm": "html:parse_html",
}
DOCUMENT_SUFFIXES = frozenset(_DOCUMENT_PARSERS)
FAQ_SUFFIXES = frozenset({".csv", ".xlsx", ".jsonl"})
SUPPORTED_SUFFIXES = DOCUMENT_SUFFIXES | FAQ_SUFFIXES


def _document_parser(suffix: str) -> DocumentParser:
    module, function = _DOCUMENT_PARSERS[suffix].split(":")
    parser: DocumentParser = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return parser


def _suffix(path: Path, name: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(name, f"unsupported file type {suffix or '(no extension)'}")
    return suffix


def load_document(
    path: Path,
    *,
    source: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> list[Chunk]:
    """Chunks of a document (Markdown, text, PDF, DOCX or HTML).

    Raises:
        LoadError: unsupported type, unreadable, too large or unparsable.
    """
    source = source or path.name
    suffix = _suffix(path, source)
    if suffix not in DOCUMENT_SUFFIXES:
        raise LoadError(source, f"{suffix} is an FAQ sheet, not a document")
    data = read_bytes(path, max_file_bytes)
    sections = _document_parser(suffix)(data, name=source, title=path.stem)
    return chunk_sections(sections, source=source, max_chars=max_chars, overlap_chars=overlap_chars)


def load_faq(
    path: Path, *, source: str | None = None, max_file_bytes: int = MAX_FILE_BYTES
) -> list[FaqEntry]:
    """FAQ entries of a CSV, XLSX or JSON-lines file.

    Raises:
        LoadError: unsupported type, unreadable, too large, malformed, or no usable row.
    """
    source = source or path.name
    suffix = _suffix(path, source)
    if suffix not in FAQ_SUFFIXES:
        raise LoadError(source, f"{suffix} is a document, not an FAQ sheet")
    return parse_faq(read_bytes(path, max_file_bytes), name=source, suffix=suffix)


def load_faq_csv(path: Path, *, source: str | None = None) -> list[FaqEntry]:
    """FAQ entries of a CSV file (`load_faq` reads the other FAQ formats too)."""
    return load_faq(path, source=source)


def load_file(
    path: str | Path,
    *,
    source: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> LoadResult:
    """Whatever one file holds: chunks for a document, entries for an FAQ sheet.

    Raises:
        LoadError: unsupported type, unreadable, too large or unparsable.
    """
    path = Path(path)
    source = source or path.name
    if _suffix(path, source) in FAQ_SUFFIXES:
        return LoadResult((), tuple(load_faq(path, source=source, max_file_bytes=max_file_bytes)))
    chunks = load_document(
        path,
        source=source,
        max_chars=max_chars,
        overlap_chars=overlap_chars,
        max_file_bytes=max_file_bytes,
    )
    return LoadResult(tuple(chunks), ())


def load_folder(
    path: str | Path,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
    max_file_bytes: int = MAX_FILE_BYTES,
) -> LoadResult:
    """Load every supported file under `path` (recursively, in name order).

    Sources are paths relative to `path` with ``/`` separators. Files of other types are
    not knowledge (images, archives) and are ignored, hidden ones (``.name``) too.

    Raises:
        FileNotFoundError: `path` is not a directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge folder not found: {root}")
    chunks: list[Chunk] = []
    faqs: list[FaqEntry] = []
    failed: list[LoadError] = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if file.suffix.lower() not in SUPPORTED_SUFFIXES:
            log.debug("not a knowledge file, ignored: %s", relative)
            continue
        source = relative.as_posix()
        try:
            loaded = load_file(
                file,
                source=source,
                max_chars=max_chars,
                overlap_chars=overlap_chars,
                max_file_bytes=max_file_bytes,
            )
        except LoadError as exc:
            # Report the source name, not the absolute path the loader may have seen.
            error = LoadError(source, exc.reason)
            log.warning("knowledge file skipped: %s", error)
            failed.append(error)
            continue
        chunks.extend(loaded.chunks)
        faqs.extend(loaded.faqs)
    log.info(
        "loaded %s: %d chunks, %d FAQ entries, %d files failed",
        root,
        len(chunks),
        len(faqs),
        len(failed),
    )
    return LoadResult(chunks=tuple(chunks), faqs=tuple(faqs), failed=tuple(failed))
