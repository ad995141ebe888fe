"""Fewer glibc malloc arenas for the operator process.

glibc gives threads their own malloc arenas (up to 8 per core) and keeps memory freed in one for
that arena's later use. The reconcile thread pool (settings.DEFAULT_WORKERS threads, each parsing
AWS responses) grew the operator's RSS that way without holding more data. Two arenas keep lock
contention low and the memory shared. `make bench-operator PAIRS=100` measured the peak RSS at
143.1 MiB with glibc's default and 127.7-130.2 MiB with two arenas (docs/bench/profiling.md).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h
OPERATOR_MALLOC_ARENAS = 2
ENVIRONMENT_OVERRIDE = "MALLOC_ARENA_MAX"  # glibc's own tunable: a value set there is left alone


def limit_malloc_arenas(arenas: int = OPERATOR_MALLOC_ARENAS, libc: Any | None = None) -> bool:
    """Cap glibc's arenas for the threads started from now on (call it before they start).

    False, and nothing changed, where the C library has no mallopt (musl, macOS) or the environment
    already sets MALLOC_ARENA_MAX."""
    if ENVIRONMENT_OVERRIDE in os.environ:
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)  # the running process: its C library is loaded already
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))  # glibc answers 1 on success
