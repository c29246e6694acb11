"""The repository stands alone: nothing in it points outside the checkout."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Built, installed or generated: not part of what a clone holds.
SKIP_DIRS = {".git", ".venv", "data", "site", "__pycache__", "node_modules"}
# Spelled in pieces so this file does not match itself.
OUTSIDE = (
    "../" + "shared",
    *("shared/" + name for name in ("protocols", "eval", "DESIGN", "STYLE")),
)


def _repo_files() -> list[Path]:
    files = []
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        if (
            path.is_file()
            and not parts & SKIP_DIRS
            and not any(p.endswith(".egg-info") for p in parts)
        ):
            files.append(path)
    return files


def test_no_file_refers_to_a_sibling_checkout() -> None:
    offenders = []
    for path in _repo_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if any(pattern in text for pattern in OUTSIDE):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"files that point outside the repository: {offenders}"


def test_what_the_tests_and_eval_need_is_in_the_repo() -> None:
    assert (REPO / "tests" / "vectors" / "wechat.json").is_file()
    assert (REPO / "docs" / "protocols" / "index.md").is_file()
    assert (REPO / "benchmarks" / "data" / "cs" / "telecom" / "questions.jsonl").is_file()
