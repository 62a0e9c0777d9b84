"""C allocator policy for a gateway that holds large tables for a long time.

CPython's own allocator serves objects up to 512 bytes; everything larger, above all the
hash tables of the dicts that index 100,000 subscriptions, comes from the C library's
``malloc``. On glibc two of its defaults cost a long-running gateway memory it never gets
back (measured with ``benchmarks/presence_scale.py``: 50 bytes of RSS per subscription,
2,115 -> 2,063 at 100,000 held):

* The mmap threshold is dynamic: when a block obtained with ``mmap`` is freed, glibc raises
  the threshold to that block's size, so the next, larger table of a growing dict comes
  from the ``brk`` heap instead, and the table it replaces leaves a hole there that only
  smaller blocks can fill. A fixed threshold (:data:`MMAP_THRESHOLD`) keeps every large
  table in its own mapping, returned to the system when the dict grows past it.
* Each thread that allocates gets an arena of its own: the store's thread keeps the
  SQLite page and statement memory it freed in a separate arena the event loop's thread
  cannot reuse. One arena (:data:`ARENA_MAX`) shares it; the store's thread allocates
  little, and under the GIL, so the shared lock is not contended.

:func:`apply` sets both with ``mallopt(3)`` at start, before the store's thread exists.
An operator's own ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_ARENA_MAX`` environment variable
wins over ours; on another C library nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "apply"]

#: Blocks of this size and above get their own mapping: glibc's default starting value,
#: kept fixed. A dict of 5,500 or more entries has a table that large.
MMAP_THRESHOLD = 128 * 1024

#: malloc arenas for the whole process (see the module docstring).
ARENA_MAX = 1

# mallopt(3) parameters, from glibc's <malloc.h>.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def apply(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """Set the policy on glibc; return what was set (empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return {}
    name = ctypes.util.find_library("c")
    if name is None:
        return {}
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl has mallopt too)
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied: dict[str, int] = {}
    for env, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
    ):
        if env not in environ and mallopt(param, value) == 1:
            applied[env] = value
    return applied
