"""What every loader shares: its error, its results, reading bytes and decoding text."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from knowledge.text.chunking import Chunk

# Bigger files are refused unread: a knowledge file that size is almost always a mistake
# (a scanned archive, a database dump), and parsing it would stall ingestion.
MAX_FILE_BYTES = 20 * 1024 * 1024


class LoadError(Exception):
    """A knowledge file that cannot be loaded; the message says which file and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


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
    """What a file or folder yielded, and the files that failed."""

    chunks: tuple[Chunk, ...]
    faqs: tuple[FaqEntry, ...]
    failed: tuple[LoadError, ...] = ()


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


def read_bytes(path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, refusing one larger than `max_file_bytes` before reading it.

    Raises:
        LoadError: unreadable, or too large.
    """
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise LoadError(
                str(path), f"too large: {_mib(size)} (the limit is {_mib(max_file_bytes)})"
            )
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(str(path), f"cannot read: {exc.strerror or exc}") from exc


def read_text(path: Path, max_file_bytes: int = MAX_FILE_BYTES) -> str:
    """Read and `decode` a file."""
    return decode(read_bytes(path, max_file_bytes), str(path))


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size >= 1024 * 1024 else f"{size} bytes"
