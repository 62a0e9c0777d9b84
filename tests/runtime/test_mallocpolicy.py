"""The C allocator policy (runtime/mallocpolicy.py): set on glibc at start, and an operator's
own MALLOC_* environment variables win."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from sipxmpp.gateway.runtime import mallocpolicy

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt(3)")
def test_both_parameters_are_set_unless_the_operator_set_them() -> None:
    both = {
        "MALLOC_MMAP_THRESHOLD_": mallocpolicy.MMAP_THRESHOLD,
        "MALLOC_ARENA_MAX": mallocpolicy.ARENA_MAX,
    }
    assert mallocpolicy.apply({}) == both
    assert mallocpolicy.apply({"MALLOC_ARENA_MAX": "4"}) == {
        "MALLOC_MMAP_THRESHOLD_": mallocpolicy.MMAP_THRESHOLD
    }
    assert mallocpolicy.apply(dict.fromkeys(both, "1")) == {}


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt(3)")
def test_a_large_table_freed_goes_back_to_the_system() -> None:
    """With the fixed threshold, the old table of a dict that grew is unmapped: RSS after
    growing and dropping a large dict comes back down (the dynamic threshold would have
    moved the next tables to the brk heap, where freeing them returns nothing)."""
    code = """
import gc
from sipxmpp.gateway.runtime import mallocpolicy
mallocpolicy.apply({})
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
keys = [str(i) for i in range(400_000)]
base = rss()
for _ in range(3):
    d = dict.fromkeys(keys)
    del d
    gc.collect()
print(rss() - base)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(out.stdout) < 4 * 1024, out.stdout  # KiB: a 400,000-entry table is ~15 MiB
