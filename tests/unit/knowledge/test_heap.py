"""Returning freed heap pages to the OS after an index build."""

from __future__ import annotations

import platform

from knowledge.search import heap


def test_trim_works_on_glibc_and_can_be_repeated() -> None:
    garbage = [bytes(300) for _ in range(20_000)]  # ~6 MB of glibc-sized blocks
    del garbage
    on_glibc = platform.libc_ver()[0] == "glibc"
    assert heap.trim() is on_glibc
    assert heap.trim() is on_glibc
