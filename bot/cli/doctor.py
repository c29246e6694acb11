"""`bot doctor`: checks the configured setup and says what to fix, in Chinese and English.

One line per check: ✓ passed, ✗ failed (with what to do), ! works but not as production
needs (a warning), – skipped (not configured). Exit status 0 when nothing failed, 1
otherwise (2 stays argparse's, for a bad flag). Every external call has a short timeout and
the checks run concurrently, so a run takes seconds even with everything unreachable.
The checks live in `bot.doctor` (shared with `/readyz?verbose=1`), imported only when the
command runs (they pull in every adapter: time that every other `bot` command would pay).
"""

from __future__ import annotations

import argparse
import sys

FAILED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser(
        "doctor",
        help="check Redis, the database, each platform app and model endpoint (exit 0/1)",
    )


def cmd_doctor(_args: argparse.Namespace) -> int:
    from bot.doctor.result import Status
    from bot.doctor.run import check_all

    results = check_all()
    for result in results:
        print(result.line())
    failed = sum(r.status is Status.FAIL for r in results)
    print(f"{failed} failed" if failed else "all configured checks passed", file=sys.stderr)
    return FAILED if failed else 0
