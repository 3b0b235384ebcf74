"""Giving back to the kernel the heap memory a burst of the agent's work freed.

glibc's malloc keeps what a burst frees (spawning or reaping 100 workers, a reload's
handover) in its heap for later, so the agent's RSS would stay at its high-water
mark. The engine calls `give_back_freed_heap` once such a burst is over; after
start-up alone it returns about 1 MiB.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_malloc_trim: Callable[[int], int] | None
try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc; absent from musl
except AttributeError:
    _malloc_trim = None


def give_back_freed_heap() -> None:
    """Return the free pages of malloc's heap to the kernel (no-op without glibc)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
