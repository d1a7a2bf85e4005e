"""glibc's malloc: how many arenas the process's threads share (``MALLOC_ARENA_MAX``, default 2),
and the freed memory handed back to the system after each housekeeping pass (``trim``).

glibc gives a thread that finds the arenas in use one of its own, up to eight per core.  A block
freed into an arena is reused only from that arena, and an arena's freed memory is seldom given
back to the system.  This process has a thread per login socket, per lane and per request.  When
ten logins' sockets decode their day-long ``user/syncrequest`` snapshots at once (a dropped socket,
a renewed token), each decode's large blocks (dict tables, lists, the frame's text) land in its own
thread's arena, and the process keeps the sum of all those peaks.  With fewer arenas the threads
reuse the same freed memory.  Measured (``python -m bench.resync_memory --logins 10 --orders 3000
--keep-s 20 --variants 0,2,1``): ten logins resyncing a 3,000-order day, RSS after four rounds
120.7 MB with glibc's default, 85.3 MB with 2 -- for the same 30 orders held.

An arena's free pages are given back only from its top; ``malloc_trim`` gives back every free page.
The housekeeping thread calls it after each pass (that pass has just dropped finished orders):
0.6-0.8 ms, and 85.3 -> 78.3 MB after the ten logins' resyncs above.

Python code allocates while holding the GIL, so threads seldom wait for an arena: a small number
costs no measurable speed.  Only new arenas are limited, so this runs before the app starts any
thread (``create_app``).  Not glibc (macOS, musl): nothing to set, nothing done.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h


def _libc(name: str) -> Optional[Any]:
    """The C library's function ``name``, or None (not glibc: macOS, musl)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def limit(n: int) -> bool:
    """At most ``n`` arenas for threads created from now on (0: leave glibc's default).  Returns
    whether the C library took the setting."""
    mallopt = _libc("mallopt") if n > 0 else None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    taken = bool(mallopt(M_ARENA_MAX, int(n)))
    logger.debug("malloc arenas limited to %d: %s", n, "taken" if taken else "refused")
    return taken


def trim() -> bool:
    """Give the free memory of every arena back to the system (``malloc_trim(0)``; it holds each
    arena's lock for a moment: off the hot path only).  Returns whether any was given back."""
    malloc_trim = _libc("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes, malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return bool(malloc_trim(0))
