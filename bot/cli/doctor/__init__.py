"""`bot doctor`: checks the configured setup and says what to fix, in Chinese and English.

One line per check: ✓ passed, ✗ failed (with what to do), ! works but not as production
needs (a warning), – skipped (not configured). Exit status 0 when nothing failed, 1
otherwise (2 stays argparse's, for a bad flag). Every external call has a short timeout and
the checks run concurrently, so a run takes seconds even with everything unreachable.
The checks live in `bot.cli.doctor.run`, imported only when the command runs (they pull in
the model SDKs and every adapter: seconds that every other `bot` command would pay).
"""

from __future__ import annotations

import argparse

FAILED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser(
        "doctor",
        help="check Redis, the database, each platform app and model endpoint (exit 0/1)",
    )


def cmd_doctor(_args: argparse.Namespace) -> int:
    from bot.cli.doctor.run import doctor

    return FAILED if doctor() else 0
