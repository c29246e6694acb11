"""`bot kb eval --answers`: what a customer sees without a model, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PG_ADMIN_URL
from tests.integration.conftest import REPO


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{tmp_path}/k.db"}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "eval", "--answers", *args],
        env=env,
        cwd=tmp_path,  # from any folder
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_the_sample_set_prints_right_wrong_declined_and_turn_figures(tmp_path: Path) -> None:
    code, out = _run(tmp_path)
    assert code == 0, out
    [row] = [line.split() for line in out.splitlines() if line.startswith("sample ")]
    # set, answerable, then "n/N (p%)" pairs: right, wrong, declined, multi, outside, greetings
    answerable = int(row[1])
    counts = [tuple(map(int, row[i].split("/"))) for i in range(2, 14, 2)]
    right, wrong, declined, multi, outside, greetings = counts
    assert answerable == 24
    assert right[0] + wrong[0] + declined[0] == answerable
    assert greetings == (14, 14)  # small talk and 人工 all answered, none declined
    assert multi[1] == 12
    assert multi[0] >= 10
    assert outside[1] == 10


def test_a_missing_set_is_one_line(tmp_path: Path) -> None:
    code, out = _run(tmp_path, "--sets", "nope")
    assert code != 0
    assert out.strip().splitlines() == [
        "no answer set 'nope' (sets: sample, heldout, telecom, travel)"
    ]


def _rows(out: str) -> dict[str, list[str]]:
    return {row[0]: row for row in (line.split() for line in out.splitlines()) if row}


def test_searching_inside_postgresql_answers_as_the_in_process_index(tmp_path: Path) -> None:
    code, in_process = _run(tmp_path, "--sets", "sample,travel")
    assert code == 0, in_process
    code, on_pg = _run(
        tmp_path,
        "--sets",
        "sample,travel",
        "--backend",
        "postgresql",
        "--database-url",
        PG_ADMIN_URL,
    )
    assert code == 0, on_pg
    assert "inside PostgreSQL" in on_pg
    for name in ("sample", "travel"):
        # Every figure of the row: right, wrong, declined, multi, out-of-scope, greetings.
        assert _rows(on_pg)[name] == _rows(in_process)[name]
