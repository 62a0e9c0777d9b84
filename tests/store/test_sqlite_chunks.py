"""How the SQLite store splits a batch into multi-row statements (a few fixed sizes only,
so the connection's statement cache holds a few prepared upserts, not one per size)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipxmpp.gateway.store import LocalStoreError
from sipxmpp.gateway.store.sqlite import SQLITE_BATCH_ROWS, chunk_sizes


@pytest.mark.parametrize(
    ("rows", "largest", "expected"),
    [
        (0, 500, []),
        (1, 500, [1]),
        (500, 500, [500]),
        (1000, 500, [500, 500]),
        (1001, 500, [500, 500, 1]),
        (499, 500, [100] * 4 + [20] * 4 + [4] * 4 + [1] * 3),
        (623, 500, [500, 100, 20, 1, 1, 1]),
        (50, 7, [7] * 7 + [1]),
        (3, 1, [1, 1, 1]),
    ],
)
def test_chunk_sizes_table(rows: int, largest: int, expected: list[int]) -> None:
    assert chunk_sizes(rows, largest) == expected


@given(st.integers(0, 20_000), st.integers(1, SQLITE_BATCH_ROWS))
def test_chunks_cover_the_batch_in_few_distinct_sizes(rows: int, largest: int) -> None:
    sizes = chunk_sizes(rows, largest)
    assert sum(sizes) == rows
    assert sizes == sorted(sizes, reverse=True)
    # every batch draws on the same few sizes: largest, largest // 5, ... 1
    allowed = {largest}
    while max(allowed) > 1 and min(allowed) > 1:
        allowed.add(max(1, min(allowed) // 5))
    assert set(sizes) <= allowed | {1}
    assert len(set(chunk_sizes(SQLITE_BATCH_ROWS - 1, SQLITE_BATCH_ROWS))) <= 4


def test_chunk_sizes_refuses_an_empty_statement() -> None:
    with pytest.raises(LocalStoreError):
        chunk_sizes(10, 0)
