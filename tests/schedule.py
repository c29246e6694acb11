"""Longest first: how `pytest -n N` (pytest-xdist) hands tests to its worker processes.

xdist's default `load` distribution sends tests in collection order, in chunks that shrink as
the run goes: a worker may get a chunk with a minute-long fault test late in the run and run
it alone while the others have finished. Here the slowest tests go out first and every test is
its own unit of work, a worker asking for the next when it is down to one waiting; the many
short tests that follow fill the gaps, so the workers end at about the same time (the
longest-processing-time-first rule).

Kept together, as xdist's `loadscope` would: a unit-test module (fast; one unit is less
traffic), and a module that declares a module-scoped fixture (built once, not once per
worker: a PostgreSQL server, a matrix run through one worker, a report per module).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

ROOT = Path(__file__).resolve().parents[1]

# Node-id prefixes in the order they are started: the slowest first (seconds from
# `make test --durations=70` on the 2-core CI machine). A test not named here starts after
# these, integration before unit; a renamed test only loses its place, nothing breaks.
SLOW_FIRST = (
    "tests/integration/faults/test_worker_kill.py",  # 62 s
    "tests/integration/faults/test_broker_down.py",  # 41 s
    "tests/integration/faults/test_platform_faults.py",  # 27 s
    "tests/integration/deploy/test_cli.py::test_bot_up_answers_from_the_sample_knowledge_base",
    "tests/integration/adapters/test_dingtalk_stream.py::test_killing_the_holder_process",
    "tests/integration/deploy/test_quick_start.py",  # 18 s
    "tests/integration/faults/",  # Redis paused and down, models hanging: 13-17 s each
    "tests/integration/adapters/test_feishu_stream.py::test_killing_the_holder_process",
    "tests/integration/adapters/test_wecom_aibot_longconn_e2e.py",  # 17 s + 4 s
    "tests/integration/knowledge/test_kb_cli.py",  # 17 s + 8 s
    "tests/integration/pipeline/test_wecom_aibot_crash.py",  # 15 s
    "tests/integration/pipeline/test_feishu_cards_crash.py",  # 15 s
    "tests/integration/console/browser/test_console.py",  # 16 s, 14 s, 7 s, 4 s, 3 s
    "tests/integration/web/test_http_fuzz.py",  # 14 s
    "tests/integration/pipeline/test_feishu_cards_sweep.py",  # 13 s
    "tests/integration/pipeline/test_worker_crash.py",  # 13 s
    "tests/integration/pipeline/test_dingtalk_cards.py::test_worker_killed_mid_stream",
    "tests/integration/console/browser/",  # 3-10 s each
    "tests/integration/knowledge/test_answer_eval.py",  # 10 s
    "tests/integration/knowledge/test_kb_cli_dense.py",  # 9 s, 5 s
    "tests/integration/console/test_users_cli.py",  # 9 s, 4 s
    "tests/integration/knowledge/test_kb_ingest_job.py",  # 8 s, 5 s
    "tests/integration/knowledge/test_kb_synonyms.py",  # 8 s
    "tests/integration/pipeline/test_wechat_mp_end_to_end.py",  # 7 s, 7 s, 6 s
    "tests/integration/deploy/",  # bot up, doctor (4 s each), the CLI
    "tests/integration/console/test_faq.py",  # 7 s
    "tests/integration/orders/test_orders_cli.py",  # 6 s, 3 s
    "tests/integration/agent/test_memory_offpath.py",  # 5 s, 4 s
    "tests/integration/pipeline/test_never_silent.py",  # one worker for the whole matrix
    "tests/integration/knowledge/test_kb_pgvector.py",  # its own PostgreSQL server
)


def rank(nodeid: str) -> tuple[int, int]:
    """Where a test starts: its place in SLOW_FIRST, then integration, then unit tests."""
    for place, prefix in enumerate(SLOW_FIRST):
        if nodeid.startswith(prefix):
            return 0, place
    return (2, 0) if nodeid.startswith("tests/unit/") else (1, 0)


@functools.cache
def _module_scoped(module: str) -> bool:
    """Whether a test module declares a module-scoped fixture."""
    try:
        return 'scope="module"' in (ROOT / module).read_text(encoding="utf-8")
    except OSError:
        return False


class LongestFirst(LoadScopeScheduling):
    """xdist's `loadscope` scheduler with one test per unit of work (but the modules above),
    units queued in collection order: the workers sort their collection by `rank`."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        # Keep the collection's order (the workers sort it by rank), not biggest unit first.
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        if module.startswith("tests/unit/") or _module_scoped(module):
            return module
        return nodeid
