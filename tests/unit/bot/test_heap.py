"""bot.heap: what a long-running process does to the garbage collector at start-up.

Each case runs in a child interpreter: freezing or re-tuning the collector of the test
process itself would change every later test.
"""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json, sys
from bot import heap
before = gc.get_threshold()
heap.settle(**json.loads(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _settle(**kwargs: int) -> dict[str, list[int] | int]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_settle_freezes_the_start_up_heap_and_keeps_the_thresholds() -> None:
    seen = _settle()
    assert seen["frozen"] > 1000  # the modules imported so far, at least
    assert seen["after"] == seen["before"]


def test_settle_sets_only_the_young_threshold() -> None:
    seen = _settle(young_threshold=12_345)
    before, after = seen["before"], seen["after"]
    assert isinstance(before, list)
    assert isinstance(after, list)
    assert after == [12_345, *before[1:]]
