"""The Dockerfile's build-time Python steps run against this checkout: a module they import
that moved breaks the image build (it did once: knowledge.tokenize → knowledge.text)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `RUN python -c "…"` (one line, double-quoted code, as the Dockerfile writes them).
PYTHON_STEP = re.compile(r'^RUN python -c "([^"]+)"\s*$', re.MULTILINE)


def test_every_python_step_of_the_dockerfile_runs() -> None:
    steps = PYTHON_STEP.findall((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert steps, "no `RUN python -c` step found: update this test with the Dockerfile"
    for code in steps:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{code}\n{done.stderr[-2000:]}"
