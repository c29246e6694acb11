"""The garbage collector's settings for a long-running process (web or worker)."""

from __future__ import annotations

import gc

# A young collection after this many container allocations (Python's default is 700). A
# worker holding a thousand turns allocates fast and keeps much of it alive for seconds: at
# 700, with the start-up heap frozen, the collector still took 1.4 s of a run's 16 s of CPU;
# at 10,000, 0.55 s (benchmarks/README.md, worker in-flight).
YOUNG_THRESHOLD = 10_000


def settle(*, young_threshold: int | None = None) -> None:
    """Move what start-up loaded out of the collector's reach; optionally collect less often.

    Start-up loads objects that live as long as the process (modules, the jieba dictionary,
    the routes, the adapters); every full collection walked them again. Frozen, they are
    skipped; reference counting still frees what is no longer used.
    """
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
