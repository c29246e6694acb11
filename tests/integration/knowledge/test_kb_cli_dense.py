"""`bot kb add|reindex|search` with an embedding service (the fake, on loopback), and
`bot kb eval` on the repo's evaluation sets and on a pair set given with --data, as a user
runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from bot.db.engine import get_engine
from knowledge.models import ChunkVector
from tests.fakes.base import serve
from tests.fakes.embedding_server import EmbeddingFakeState, embedding_app
from tests.integration.conftest import REPO, SAMPLE_KB


@pytest.fixture
def fake() -> Iterator[tuple[EmbeddingFakeState, str]]:
    state = EmbeddingFakeState(dim=24, api_key="sk-cli")
    with serve(embedding_app(state)) as url:
        yield state, url


def _run(tmp_path: Path, url: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WECOM_", "VLLM_", "DASHSCOPE_", "BOT_", "REDIS_", "DATABASE_"))
        and not k.startswith("EMBEDDING_")
    }
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": f"sqlite:///{tmp_path}/kb.db",
        "EMBEDDING_BASE_URL": f"{url}/v1",
        "EMBEDDING_MODEL": "fake-bge-m3",
        "EMBEDDING_API_KEY": "sk-cli",
        "EMBEDDING_DIM": "24",
        "EMBEDDING_TIMEOUT_S": "2",
        "EMBEDDING_RETRIES": "0",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", *args],
        env=env,
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _vectors(tmp_path: Path) -> int:
    with Session(get_engine(f"sqlite:///{tmp_path}/kb.db")) as s:
        return int(s.exec(select(func.count()).select_from(ChunkVector)).one())


def test_add_during_an_outage_then_reindex_then_hybrid_search(
    tmp_path: Path, fake: tuple[EmbeddingFakeState, str]
) -> None:
    state, url = fake
    folder = tmp_path / "kb"
    shutil.copytree(SAMPLE_KB, folder)
    state.fail_next(100, status=503)  # every try of every file
    code, out = _run(tmp_path, url, "add", str(folder))
    assert code == 0, out  # the documents are in, keyword-searchable
    assert "3 added" in out
    assert "向量化失败" in out or _vectors(tmp_path) == 0
    assert _vectors(tmp_path) == 0
    state.failures.clear()
    code, out = _run(tmp_path, url, "reindex")
    assert code == 0, out
    assert "3 documents embedded" in out
    assert "0 failed" in out
    stored = _vectors(tmp_path)
    assert stored > 0
    code, out = _run(tmp_path, url, "search", "怎么退货")
    assert code == 0, out
    assert "score" in out
    assert state.matching("/embeddings")[-1].json["input"] == ["怎么退货"]  # hybrid search


def test_reindex_without_an_embedding_service_says_so(tmp_path: Path) -> None:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "DATABASE_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "reindex"],
        env={**keep, "PYTHONPATH": str(REPO), "DATABASE_URL": f"sqlite:///{tmp_path}/kb.db"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "no embedding service configured" in proc.stdout


def _pair_set(root: Path) -> Path:
    """A small set in the BQ/AFQMC layout, made from the sample FAQ: each main question is
    a corpus entry, each of its paraphrases a query whose relevant entry it is."""
    from knowledge.loaders import load_faq_csv

    folder = root / "mini" / "dev"
    folder.mkdir(parents=True)
    entries = load_faq_csv(SAMPLE_KB / "faq.csv")
    corpus = [{"id": f"c{i}", "text": e.question} for i, e in enumerate(entries)]
    queries = [
        {"id": f"q{i}-{j}", "text": similar, "relevant": [f"c{i}"], "known_negatives": []}
        for i, e in enumerate(entries)
        for j, similar in enumerate(e.similar)
    ]
    for name, rows in (("corpus", corpus), ("queries", queries)):
        lines = (json.dumps(r, ensure_ascii=False) for r in rows)
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_eval_prints_every_configuration(
    tmp_path: Path, fake: tuple[EmbeddingFakeState, str]
) -> None:
    _, url = fake
    data = _pair_set(tmp_path / "sets")
    code, out = _run(tmp_path, url, "eval", "--data", str(data), "--dense", "fake")
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("mini ")]
    configs = ["lexical", "dense only", "weighted w=0.3", "weighted w=0.5", "weighted w=0.7", "rrf"]
    assert [r.split()[1] for r in rows] == [c.split()[0] for c in configs]
    for row in rows:
        r1, r5, mrr = (float(x) for x in row.split()[-8:-5])
        assert 0 <= r1 <= r5 <= 1
        assert 0 <= mrr <= 1
    assert float(rows[0].split()[-7]) > 0.5  # the paraphrases find their question lexically
    code, out = _run(tmp_path, url, "eval", "--data", str(data), "--sets", "nope")
    assert code != 0
    assert "no set 'nope'" in out


def test_eval_defaults_to_the_repos_own_sets_from_any_folder(
    tmp_path: Path, fake: tuple[EmbeddingFakeState, str]
) -> None:
    _, url = fake
    code, out = _run(tmp_path, url, "eval")
    assert code == 0, out
    names = [line.split()[0] for line in out.splitlines() if " lexical " in line]
    assert names == ["telecom", "travel"]  # the held-out set only when named
