"""Issue 19: SQLite bounds every wait by ``storage_timeout_s`` (finding 4) without needing a
Task, and its space reserve (finding 2) is a real allocation beside the database."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from relay.storage.base import StorageUnavailable, StoreLimits
from relay.storage.sqlite import SQLiteStore
from relay.storage.sqlite.reserve import SpaceGuard


async def test_a_write_or_read_past_the_bound_is_unavailable_and_the_store_carries_on(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "relay.db", StoreLimits(), wait_timeout_s=0.3)
    await store.open()
    try:
        for slow in (store._write, store._read):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                await slow(lambda _conn: time.sleep(0.8))
            assert 0.25 < time.monotonic() - started < 0.7
        # The writer finished the slow operation and serves the next one.
        await store.put_challenge(b"n" * 32, b"binding", 2**40)
        assert await store.take_challenge(b"n" * 32, 0) == b"binding"
        await asyncio.sleep(0.6)  # the slow read ends; nothing is answered twice
        assert await store.count_envelopes() == 0
    finally:
        await store.aclose()


def test_the_reserve_is_allocated_released_and_taken_again(tmp_path: Path) -> None:
    guard = SpaceGuard(tmp_path / "relay.db", 1 << 20)
    guard.prepare()
    assert guard.path.stat().st_size == 1 << 20
    assert guard.path.stat().st_blocks * 512 >= 1 << 20  # allocated, not sparse
    assert os.stat(guard.path).st_mode & 0o777 == 0o600
    assert not guard.full and not guard.check()
    guard.on_full()
    assert guard.full and not guard.path.exists()
    guard._checked -= 2  # a second later: room is back, the reserve is taken again
    assert not guard.check()
    assert guard.path.stat().st_size == 1 << 20
