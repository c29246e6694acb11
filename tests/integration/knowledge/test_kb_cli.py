"""`bot kb add|list|search|rm` as a user runs them, against a SQLite file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, SAMPLE_KB

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def bot(tmp_path: Path) -> Run:
    """Run `python -m bot.cli ARGS…` with DATABASE_URL at a fresh SQLite file."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "VLLM_", "DASHSCOPE_", "BOT_", "REDIS_", "DATABASE_"))
    }
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{tmp_path}/kb.db",
        "COLUMNS": "200",  # rich wraps tables to the terminal width; keep rows on one line
    }

    def run(*args: str) -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", "kb", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return proc.returncode, proc.stdout

    return run


def _row(out: str, source: str) -> list[str]:
    """The cells of the table row that starts with (or holds) `source`."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if source in cells:
            return cells
    raise AssertionError(f"no row for {source} in:\n{out}")


def test_add_list_search_rm(bot: Run, tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    broken = tmp_path / "scan.pdf"
    broken.write_bytes(b"not a pdf at all")

    code, out = bot("add", str(folder), str(broken))
    assert code == 1, out  # something failed
    assert _row(out, "faq.csv")[1:3] == ["added", "26"]
    assert _row(out, "policies.md")[1] == "added"
    failed = _row(out, "scan.pdf")
    assert failed[1] == "failed"
    assert "PDF" in failed[3]
    assert "3 added, 0 unchanged, 0 replaced, 1 failed" in out

    code, out = bot("add", str(folder))
    assert code == 0, out
    assert "0 added, 3 unchanged, 0 replaced, 0 failed" in out

    code, out = bot("list")
    assert code == 0, out
    assert _row(out, "faq.csv")[2:4] == ["indexed", "26"]
    assert _row(out, "scan.pdf")[2] == "failed"
    policies_id = _row(out, "policies.md")[0]

    code, out = bot("search", "我想退货怎么办", "-k", "3")
    assert code == 0, out
    top = _row(out, "1")
    assert top[2:4] == ["faq.csv", "FAQ"]
    assert float(top[1]) > 0.35
    assert "Q: 怎么退货" in top[4]

    code, out = bot("rm", "faq.csv", policies_id, "nothing.md")
    assert code == 1, out  # one of them was not there
    assert "removed faq.csv (id " in out
    assert f"removed policies.md (id {policies_id}," in out
    assert "not found in 'default': nothing.md" in out
    code, out = bot("list")
    assert "faq.csv" not in out
    assert "policies.md" not in out
    assert _row(out, "product_manual.md")[2] == "indexed"
    code, out = bot("search", "我想退货怎么办")
    assert code == 0, out
    assert "faq.csv" not in out


def test_other_knowledge_bases_are_separate(bot: Run) -> None:
    code, out = bot("add", str(SAMPLE_KB / "policies.md"), "--kb", "hr")
    assert code == 0, out
    assert "1 added" in out
    code, out = bot("list")
    assert "has no documents" in out
    code, out = bot("list", "--kb", "hr")
    assert _row(out, "policies.md")[2] == "indexed"
    code, out = bot("search", "退货", "--kb", "empty")
    assert code == 1
    assert "is empty" in out
