"""Load a knowledge folder: Markdown/text documents as chunks, CSV files as FAQ entries.

- ``.md``/``.markdown``/``.txt``: split into sections on ATX headings (``#`` … ``######``,
  outside fenced code); each section is cut at Chinese sentence ends (。！？；) into chunks of
  about `max_chars` characters. A chunk's `section` is its nearest heading, `headings` the
  whole trail; text before the first heading belongs to a section named after the file.
- ``.csv``: an FAQ with a header row ``question,answer[,similar]`` (or 问题, 答案, 相似问题);
  similar questions are separated by ``|``. One `FaqEntry` per row.

Files may be UTF-8 (with or without BOM), UTF-16 with BOM, or GBK/GB18030 (what Excel on
Chinese Windows saves). A file that cannot be read is logged and reported in
`LoadResult.failed`; the other files still load.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})
FAQ_SUFFIXES = frozenset({".csv"})
DEFAULT_MAX_CHARS = 300

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# A sentence ends after Chinese or ASCII terminal punctuation (with any closing quotes or
# brackets), or at a line break; the separator stays with the sentence before it.
_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)\]\"']*|\n+|$)")
# Where an over-long sentence may be cut, best first.
_SOFT_BREAKS = "，、,：: "

_COLUMN_ALIASES = {
    "question": ("question", "问题", "标准问题", "标准问"),
    "answer": ("answer", "答案", "回答", "标准答案"),
    "similar": ("similar", "相似问题", "相似问法", "相似问"),
}
_SIMILAR_SPLIT = re.compile(r"[|｜]")


class LoadError(Exception):
    """A knowledge file that cannot be loaded; the message says which file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of a document: about `max_chars` characters from one section."""

    text: str
    source: str
    section: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FaqEntry:
    """One FAQ row: a standard question, its answer and other ways to ask it."""

    question: str
    answer: str
    source: str
    similar: tuple[str, ...] = ()

    @property
    def questions(self) -> tuple[str, ...]:
        """The standard question followed by the similar ones."""
        return (self.question, *self.similar)

    @property
    def text(self) -> str:
        """The text a query is matched against: all the questions, one per line."""
        return "\n".join(self.questions)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a folder yielded, and the files that failed."""

    chunks: tuple[Chunk, ...]
    faqs: tuple[FaqEntry, ...]
    failed: tuple[LoadError, ...] = ()


# -- encoding ------------------------------------------------------------------------------


def decode(data: bytes, name: str = "<bytes>") -> str:
    """Decode file bytes: a BOM decides, else UTF-8, else GB18030 (a superset of GBK).

    Raises:
        LoadError: binary content, or bytes valid in none of those encodings.
    """
    if data.startswith(codecs.BOM_UTF8):
        encodings = ["utf-8-sig"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    elif b"\x00" in data:
        raise LoadError(name, "binary file (NUL bytes), not text")
    else:
        encodings = ["utf-8", "gb18030"]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        # Normalise line ends once, so every parser below sees "\n" only.
        return text.replace("\r\n", "\n").replace("\r", "\n")
    raise LoadError(name, f"not valid text in {' or '.join(encodings)}")


def read_text(path: Path) -> str:
    """Read and `decode` a file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    return decode(data, str(path))


# -- documents -----------------------------------------------------------------------------


def split_sections(text: str, title: str) -> list[tuple[tuple[str, ...], str]]:
    """Split Markdown into (heading trail, body) pairs, in order; empty bodies are dropped.

    Text before the first heading gets the trail ``(title,)``.
    """
    sections: list[tuple[tuple[str, ...], str]] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            sections.append((tuple(h for _, h in trail) or (title,), content))
        body.clear()

    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, match.group(2).strip()))
    flush()
    return sections


def split_sentences(text: str) -> list[str]:
    """Split after 。！？；!?; (keeping closing quotes) and at line breaks; lossless."""
    return [s for s in _SENTENCE.findall(text) if s]


def _hard_split(sentence: str, max_chars: int) -> Iterator[str]:
    """Cut a sentence longer than `max_chars`, preferring a comma or space near the end."""
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        cut = max(window.rfind(ch) for ch in _SOFT_BREAKS)
        cut = cut + 1 if cut >= max_chars // 2 else max_chars
        yield sentence[:cut]
        sentence = sentence[cut:]
    if sentence:
        yield sentence


def chunk_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Pack whole sentences into chunks of at most `max_chars` characters (stripped)."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    chunks: list[str] = []
    current = ""
    for sentence in split_sentences(text):
        for piece in _hard_split(sentence, max_chars):
            if current and len(current) + len(piece) > max_chars:
                chunks.append(current)
                current = ""
            current += piece
    chunks.append(current)
    return [c.strip() for c in chunks if c.strip()]


def load_document(
    path: Path, *, source: str | None = None, max_chars: int = DEFAULT_MAX_CHARS
) -> list[Chunk]:
    """Chunks of a Markdown or plain-text file."""
    source = source or path.name
    chunks = []
    for headings, body in split_sections(read_text(path), title=path.stem):
        for text in chunk_text(body, max_chars):
            chunks.append(Chunk(text=text, source=source, section=headings[-1], headings=headings))
    return chunks


# -- FAQ CSV -------------------------------------------------------------------------------


def _columns(header: list[str], name: str) -> dict[str, int]:
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
            f"FAQ CSV needs a header row with question,answer[,similar]; "
            f"missing {', '.join(missing)} (header was: {','.join(header)[:80]})",
        )
    return found


def parse_faq_csv(text: str, source: str) -> list[FaqEntry]:
    """FAQ entries from CSV text; rows without a question or an answer are skipped."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise LoadError(source, f"malformed CSV: {exc}") from exc
    if not rows:
        raise LoadError(source, "empty FAQ file")
    cols = _columns(rows[0], source)
    entries = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue

        def cell(column: str, row: list[str] = row) -> str:
            index = cols.get(column)
            return row[index].strip() if index is not None and index < len(row) else ""

        question, answer = cell("question"), cell("answer")
        if not question or not answer:
            log.warning("%s row %d: skipped, question or answer is empty", source, line_no)
            continue
        similar = tuple(
            dict.fromkeys(
                s.strip()
                for s in _SIMILAR_SPLIT.split(cell("similar"))
                if s.strip() and s.strip() != question
            )
        )
        entries.append(FaqEntry(question=question, answer=answer, source=source, similar=similar))
    return entries


def load_faq_csv(path: Path, *, source: str | None = None) -> list[FaqEntry]:
    """FAQ entries of a CSV file."""
    source = source or path.name
    entries = parse_faq_csv(read_text(path), source)
    if not entries:
        raise LoadError(source, "no FAQ rows with both a question and an answer")
    return entries


# -- folders -------------------------------------------------------------------------------


def load_folder(path: str | Path, *, max_chars: int = DEFAULT_MAX_CHARS) -> LoadResult:
    """Load every supported file under `path` (recursively, in name order).

    Sources are paths relative to `path` with ``/`` separators. Unsupported files are
    ignored, hidden ones (``.name``) too.

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
        suffix = file.suffix.lower()
        source = relative.as_posix()
        try:
            if suffix in DOCUMENT_SUFFIXES:
                chunks.extend(load_document(file, source=source, max_chars=max_chars))
            elif suffix in FAQ_SUFFIXES:
                faqs.extend(load_faq_csv(file, source=source))
        except LoadError as exc:
            # Report the source name, not the absolute path the loader may have seen.
            error = LoadError(source, exc.reason)
            log.warning("knowledge file skipped: %s", error)
            failed.append(error)
    log.info(
        "loaded %s: %d chunks, %d FAQ entries, %d files failed",
        root,
        len(chunks),
        len(faqs),
        len(failed),
    )
    return LoadResult(chunks=tuple(chunks), faqs=tuple(faqs), failed=tuple(failed))
