"""One check's outcome and how `bot doctor` prints it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from adapters.errcodes import Errcode


class Status(Enum):
    OK = "✓"
    FAIL = "✗"
    WARN = "!"  # works, but not as a platform needs it in production (exit status stays 0)
    SKIP = "–"  # not configured: nothing to check


@dataclass(frozen=True, slots=True)
class Result:
    """What one check found; a failure or warning says what to do, in Chinese and English."""

    status: Status
    name: str
    detail: str = ""
    fix_zh: str = ""
    fix_en: str = ""

    def to_json(self) -> dict[str, str]:
        """For `/readyz?verbose=1`: the status by name (ok, fail, warn, skip)."""
        return {
            "status": self.status.name.lower(),
            "name": self.name,
            "detail": self.detail,
            "fix_zh": self.fix_zh,
            "fix_en": self.fix_en,
        }

    def line(self) -> str:
        text = f"{self.status.value} {self.name}"
        if self.detail:
            text += f": {self.detail}"
        if self.fix_zh or self.fix_en:
            text += f" — 怎么办：{self.fix_zh} | fix: {self.fix_en}"
        return text


def ok(name: str, detail: str = "") -> Result:
    return Result(Status.OK, name, detail)


def skip(name: str, why: str) -> Result:
    return Result(Status.SKIP, name, why)


def fail(name: str, detail: str, fix_zh: str, fix_en: str) -> Result:
    return Result(Status.FAIL, name, detail, fix_zh, fix_en)


def warn(name: str, detail: str, fix_zh: str, fix_en: str) -> Result:
    return Result(Status.WARN, name, detail, fix_zh, fix_en)


def from_errcode(name: str, detail: str, entry: Errcode) -> Result:
    """A failure the platform named with a known errcode: its table entry says the fix."""
    return fail(name, f"{detail} — {entry.en} ({entry.zh})", entry.fix_zh, entry.fix_en)
