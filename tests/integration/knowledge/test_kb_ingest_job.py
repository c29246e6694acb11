"""`bot kb add` of a folder as a job: parallel readers, batched writes, killed and resumed.

The command runs as a user runs it (a subprocess, reader processes of its own), with
embeddings from the fake service on loopback, slowed down so that the job is still going
when it is killed.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.integration.conftest import REPO

FILES = 300
DIM = 32


def _write_folder(folder: Path, files: int) -> dict[str, int]:
    """`files` small Markdown files of 1-3 sections each (one chunk a section), plus a
    broken PDF; returns each good file's source and chunk count."""
    expected = {}
    for n in range(files):
        sections = n % 3 + 1
        source = f"part{n // 100}/doc{n:04d}.md"
        path = folder / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "\n".join(
                f"## 第{j}节 型号{n}\n\n这是第{n}号文件第{j}节的说明，保修期为{j + 1}年。\n"
                for j in range(sections)
            ),
            "utf-8",
        )
        expected[source] = sections
    (folder / "part1" / "scan.pdf").write_bytes(b"not a pdf at all")
    return expected


@pytest.fixture
def embedding_url() -> Iterator[tuple[str, EmbeddingFakeState]]:
    state = EmbeddingFakeState(dim=DIM)
    with serve(embedding_app(state)) as url:
        yield f"{url}/v1", state


def _env(tmp_path: Path, embedding: str, model: str) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("WECOM_", "VLLM_", "DASHSCOPE_", "BOT_", "REDIS_", "DATABASE_", "EMBEDDING_")
        )
    }
    return {
        **keep,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{tmp_path}/kb.db",
        "EMBEDDING_BASE_URL": embedding,
        "EMBEDDING_MODEL": model,
        "EMBEDDING_DIM": str(DIM),
        "COLUMNS": "160",
    }


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # the tables are not made yet
        return 0


def test_a_killed_add_resumes_with_every_document_once(
    tmp_path: Path, embedding_url: tuple[str, EmbeddingFakeState]
) -> None:
    url, state = embedding_url
    folder = tmp_path / "kb"
    expected = _write_folder(folder, FILES)
    env = _env(tmp_path, url, state.model)
    db = tmp_path / "kb.db"
    command = [sys.executable, "-m", "bot.cli", "kb", "add", str(folder), "--workers", "2"]
    state.delay_s = 0.1  # each embedding call: the first run is still going when killed

    first = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its reader processes die with it
    )
    try:
        deadline = time.monotonic() + 90
        while _count(db, "SELECT count(*) FROM document WHERE status = 'indexed'") < 50:
            assert first.poll() is None, "the first run ended before it could be killed"
            assert time.monotonic() < deadline, "no batch was written in 90 s"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    stored = _count(db, "SELECT count(*) FROM document WHERE status = 'indexed'")
    assert 50 <= stored < FILES, stored  # killed mid-way, after whole batches only
    assert _count(db, "SELECT count(*) FROM knowledgechunk") == _count(
        db, "SELECT coalesce(sum(chunk_count), 0) FROM document"
    )

    state.delay_s = 0.0
    second = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False
    )
    assert second.returncode == 1, second.stdout + second.stderr  # the broken PDF
    summary = second.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{FILES - stored} added, {stored} unchanged, 0 replaced, 1 failed")
    assert second.stderr.count("failed: part1/scan.pdf: ") == 1, second.stderr

    with sqlite3.connect(db) as conn:
        docs = dict(
            conn.execute("SELECT source, chunk_count FROM document WHERE status = 'indexed'")
        )
        assert docs == expected  # every document once, with its chunks
        per_doc = dict(
            conn.execute(
                "SELECT d.source, count(*) FROM knowledgechunk c "
                "JOIN document d ON d.id = c.document_id GROUP BY d.source"
            )
        )
        assert per_doc == expected  # no chunk twice, none missing
        vectors = conn.execute("SELECT count(*), count(DISTINCT chunk_id) FROM chunkvector")
        assert vectors.fetchone() == (sum(expected.values()),) * 2
        failed = conn.execute("SELECT source, error FROM document WHERE status = 'failed'")
        assert [source for source, _ in failed] == ["part1/scan.pdf"]


def test_progress_as_a_user_sees_it_in_a_terminal(
    tmp_path: Path, embedding_url: tuple[str, EmbeddingFakeState]
) -> None:
    url, state = embedding_url
    folder = tmp_path / "kb"
    _write_folder(folder, 120)
    state.delay_s = 0.05
    env = {**_env(tmp_path, url, state.model), "TERM": "xterm-256color"}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "kb", "add", str(folder), "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            seen += data
        elif proc.poll() is not None:
            break
    os.close(primary)
    assert proc.wait(10) == 1
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode("utf-8", "replace"))
    # The bar was redrawn as files went in: counts of files out of 121, chunks, the file.
    frames = [line for line in screen.replace("\r", "\n").splitlines() if "ingesting" in line]
    assert len(frames) >= 3, screen
    assert "  0/121 files, 0 chunks" in frames[0], screen
    assert any(" 50/121 files, 99 chunks" in frame for frame in frames), screen
    assert "121/121 files, 240 chunks" in frames[-1], screen
    # Nothing else: a reader process's library warnings stay out of the terminal.
    assert "invalid pdf header" not in screen
    # The bad file: one line of its own, while the others went on.
    assert screen.count("failed: part1/scan.pdf: ") == 1, screen
    assert "120 added, 0 unchanged, 0 replaced, 1 failed (240 chunks written)" in screen
