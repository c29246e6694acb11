"""Counts the fault and fuzz tests report, printed after the run (tests/conftest.py)."""

LINES: list[str] = []


def report(line: str) -> None:
    """Add a line to the summary printed at the end of the run."""
    LINES.append(line)
