"""Hand freed heap memory back to the operating system after a large build.

Building the knowledge index allocates and frees millions of small objects (database
rows, token lists); glibc keeps the freed pages for reuse, so a worker's resident size
would stay at the build's peak. `trim` asks glibc to return them (`malloc_trim`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError, TypeError):
        return None  # not glibc (musl, macOS): nothing to trim
    return libc


def trim() -> bool:
    """Return free heap memory to the OS; False where the C library cannot (not glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
