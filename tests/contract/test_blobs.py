"""The filesystem blob store (relay.blobs.fs, protocol.md §5.9) on real temporary
directories, with real processes sharing one directory through ``flock``."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from relay.blobs import BlobMeta, FilesystemBlobStore, quota_key, token_hash
from relay.blobs.fs import META
from relay.storage.errors import (
    BlobNotFound,
    BlobOffsetMismatch,
    BlobRangeInvalid,
    BlobTooLarge,
    IdCollision,
    QuotaExceeded,
)

NOW = 1_750_000_000
UT, RT = b"u" * 32, b"r" * 32
SID = b"s" * 16
QK = quota_key(SID)


def meta(size: int, *, dl: int | None = None, ttl: int = 3600, upload_ttl: int = 600) -> BlobMeta:
    return BlobMeta(
        size=size,
        offset=0,
        done=False,
        created=NOW,
        expires=NOW + ttl,
        upload_deadline=NOW + min(ttl, upload_ttl),
        downloads_left=dl,
        ut_hash=token_hash(UT),
        rt_hash=token_hash(RT),
        quota_key=QK,
    )


async def body(*parts: bytes, pause: float = 0) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        if pause:
            await asyncio.sleep(pause)


async def read_all(store: FilesystemBlobStore, blob_id: bytes, start: int = 0) -> bytes:
    d = await store.open_download(blob_id, RT, start, NOW)
    try:
        return b"".join([c async for c in d.chunks()])
    finally:
        await d.aclose()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FilesystemBlobStore]:
    s = FilesystemBlobStore(tmp_path / "blobs", read_buffer=64 << 10, sync_every=128 << 10)
    await s.open()
    yield s
    await s.aclose()


async def test_lifecycle_and_record(store: FilesystemBlobStore) -> None:
    bid = os.urandom(16)
    data = os.urandom(300_000)
    await store.create(bid, meta(len(data)), max_blobs=4, max_bytes=1 << 20)
    with pytest.raises(IdCollision):
        await store.create(bid, meta(10), max_blobs=4, max_bytes=1 << 20)
    record = (store.directory / f"{bid.hex()}.meta").read_bytes()
    assert len(record) == META.size == 128
    assert UT not in record and RT not in record and SID not in record  # hashes only
    state = await store.append(bid, UT, 0, body(data[:100_000]), 100_000, NOW)
    assert (state.offset, state.done) == (100_000, False)
    state = await store.append(
        bid, UT, 100_000, body(data[100_000:250_000], data[250_000:]), None, NOW
    )
    assert (state.offset, state.done) == (len(data), True)
    assert not (store.directory / f"{bid.hex()}.part").exists()
    assert await read_all(store, bid) == data
    assert await read_all(store, bid, 299_999) == data[-1:]
    with pytest.raises(BlobRangeInvalid):
        await store.open_download(bid, RT, len(data), NOW)
    for token in (UT, b"x" * 32):
        with pytest.raises(BlobNotFound):
            await store.open_download(bid, token, 0, NOW)
    with pytest.raises(BlobNotFound):  # complete: no more uploads
        await store.append(bid, UT, len(data), body(b"x"), 1, NOW)
    assert await store.usage(QK) == (1, len(data))


async def test_a_download_closed_unread_releases_its_file(store: FilesystemBlobStore) -> None:
    bid = os.urandom(16)
    await store.create(bid, meta(10), max_blobs=4, max_bytes=1 << 20)
    await store.append(bid, UT, 0, body(b"0123456789"), 10, NOW)
    fds = len(os.listdir("/proc/self/fd"))
    d = await store.open_download(bid, RT, 0, NOW)
    assert len(os.listdir("/proc/self/fd")) == fds + 1
    await d.aclose()  # never streamed (the client went away before the headers)
    await d.aclose()  # idempotent
    assert len(os.listdir("/proc/self/fd")) == fds


async def test_refusals_change_nothing(store: FilesystemBlobStore) -> None:
    bid = os.urandom(16)
    await store.create(bid, meta(1000), max_blobs=4, max_bytes=1 << 20)
    await store.append(bid, UT, 0, body(b"a" * 400), 400, NOW)
    with pytest.raises(BlobOffsetMismatch):
        await store.append(bid, UT, 0, body(b"b" * 400), 400, NOW)
    with pytest.raises(BlobTooLarge):  # announced past the size: nothing read
        await store.append(bid, UT, 400, body(b"c" * 601), 601, NOW)
    with pytest.raises(BlobTooLarge):  # found while writing: this call's bytes cut back
        await store.append(bid, UT, 400, body(b"c" * 300, b"c" * 301), None, NOW)
    with pytest.raises(BlobNotFound):
        await store.append(bid, b"x" * 32, 400, body(b"c"), 1, NOW)
    with pytest.raises(BlobNotFound):  # not complete: not readable
        await store.open_download(bid, RT, 0, NOW)
    assert (await store.upload_state(bid, UT, NOW)).offset == 400
    assert (store.directory / f"{bid.hex()}.part").read_bytes() == b"a" * 400


async def test_a_failing_body_keeps_what_arrived(store: FilesystemBlobStore) -> None:
    bid = os.urandom(16)
    await store.create(bid, meta(1000), max_blobs=4, max_bytes=1 << 20)

    async def cut() -> AsyncIterator[bytes]:
        yield b"k" * 700
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await store.append(bid, UT, 0, cut(), 1000, NOW)
    assert (await store.upload_state(bid, UT, NOW)).offset == 700


async def test_bytes_past_the_recorded_offset_are_dropped(store: FilesystemBlobStore) -> None:
    """A crash after a write but before its offset was recorded leaves unacknowledged bytes
    in the .part file: the next upload at the recorded offset cuts them off."""
    bid = os.urandom(16)
    await store.create(bid, meta(10), max_blobs=4, max_bytes=1 << 20)
    await store.append(bid, UT, 0, body(b"01234"), 5, NOW)
    with (store.directory / f"{bid.hex()}.part").open("ab") as fh:
        fh.write(b"garbage-garbage")
    await store.append(bid, UT, 5, body(b"56789"), 5, NOW)
    assert await read_all(store, bid) == b"0123456789"


async def test_download_limit_unlinks_before_streaming(store: FilesystemBlobStore) -> None:
    bid = os.urandom(16)
    await store.create(bid, meta(200_000, dl=2), max_blobs=4, max_bytes=1 << 20)
    await store.append(bid, UT, 0, body(b"v" * 200_000), 200_000, NOW)
    assert await read_all(store, bid, 10) == b"v" * 199_990
    d = await store.open_download(bid, RT, 0, NOW)
    assert sorted(store.directory.glob(f"{bid.hex()}.*")) == []  # gone before streaming
    assert await store.usage(QK) == (0, 0)
    assert b"".join([c async for c in d.chunks()]) == b"v" * 200_000
    await d.aclose()
    with pytest.raises(BlobNotFound):
        await store.open_download(bid, RT, 0, NOW)


async def test_quota_expiry_and_purge(store: FilesystemBlobStore) -> None:
    a, b, c = os.urandom(16), os.urandom(16), os.urandom(16)
    await store.create(a, meta(600, ttl=60), max_blobs=2, max_bytes=1000)
    with pytest.raises(QuotaExceeded):
        await store.create(b, meta(401), max_blobs=2, max_bytes=1000)
    await store.create(b, meta(400, upload_ttl=30), max_blobs=2, max_bytes=1000)
    with pytest.raises(QuotaExceeded):
        await store.create(c, meta(1), max_blobs=2, max_bytes=1000)
    assert await store.purge(NOW) == 0
    with pytest.raises(BlobNotFound):  # past its upload deadline
        await store.append(b, UT, 0, body(b"x"), 1, NOW + 30)
    assert await store.purge(NOW + 30) == 1
    assert not list(store.directory.glob(f"{b.hex()}.*"))
    later = replace(meta(1000), created=NOW + 61, expires=NOW + 3661, upload_deadline=NOW + 661)
    await store.create(c, later, max_blobs=2, max_bytes=1000)  # a expired: reaped by create
    assert not list(store.directory.glob(f"{a.hex()}.*"))
    assert await store.usage(QK) == (1, 1000)


async def test_purge_sweeps_leftovers(store: FilesystemBlobStore) -> None:
    live = os.urandom(16)
    await store.create(live, meta(10), max_blobs=8, max_bytes=1 << 20)
    orphan, corrupt = os.urandom(16).hex(), os.urandom(16).hex()
    (store.directory / f"{orphan}.part").write_bytes(b"left by a crash")
    (store.directory / f"{orphan}.blob").write_bytes(b"left by a crash")
    (store.directory / f"{corrupt}.meta").write_bytes(b"not a record")
    (store.directory / f"{corrupt}.part").write_bytes(b"x")
    stale = store.directory / "q" / os.urandom(16).hex()
    stale.mkdir()
    (stale / f"{orphan}.15").touch()
    await store.purge(NOW)
    names = {p.name for p in store.directory.iterdir()}
    assert not {n for n in names if n.startswith((orphan, corrupt))}
    assert not stale.exists()
    assert f"{live.hex()}.meta" in names and await store.usage(QK) == (1, 10)


# --- several processes sharing one directory ------------------------------------------------


def _slow_upload(directory: str, bid: bytes, started: str) -> None:
    async def run() -> None:
        s = FilesystemBlobStore(Path(directory))

        async def slow() -> AsyncIterator[bytes]:
            yield b"p" * 1000
            Path(started).touch()  # noqa: ASYNC240 - a marker file, in a child process
            await asyncio.sleep(1.5)
            yield b"q" * 1000

        await s.append(bid, UT, 0, slow(), 2000, NOW)

    asyncio.run(run())


def _create_many(directory: str, n: int) -> int:
    async def run() -> int:
        s = FilesystemBlobStore(Path(directory))
        made = 0
        for _ in range(n):
            try:
                await s.create(os.urandom(16), meta(10), max_blobs=5, max_bytes=1 << 20)
                made += 1
            except QuotaExceeded:
                pass
        return made

    return asyncio.run(run())


def _download_once(directory: str, bid: bytes) -> bool:
    async def run() -> bool:
        s = FilesystemBlobStore(Path(directory))
        try:
            return await read_all(s, bid) == b"d" * 5000
        except BlobNotFound:
            return False

    return asyncio.run(run())


async def test_processes_share_the_directory(store: FilesystemBlobStore, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    directory = str(store.directory)
    # One upload at a time per blob, across processes; the state stays readable meanwhile.
    bid = os.urandom(16)
    await store.create(bid, meta(2000), max_blobs=64, max_bytes=1 << 20)
    started = tmp_path / "started"
    proc = ctx.Process(target=_slow_upload, args=(directory, bid, str(started)))
    proc.start()
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert started.exists()
    with pytest.raises(BlobOffsetMismatch):
        await store.append(bid, UT, 0, body(b"z" * 2000), 2000, NOW)
    t0 = time.monotonic()
    assert (await store.upload_state(bid, UT, NOW)).offset == 0  # not blocked by the upload
    assert time.monotonic() - t0 < 1
    await asyncio.to_thread(proc.join, 20)
    assert proc.exitcode == 0
    assert await read_all(store, bid) == b"p" * 1000 + b"q" * 1000
    # The quota is counted atomically across processes.
    with ctx.Pool(3) as pool:
        made = await asyncio.to_thread(pool.starmap, _create_many, [(directory, 4)] * 3)
    assert sum(made) == 4  # 5 allowed per quota key, one is the blob above
    # So is the download limit.
    limited = os.urandom(16)
    other = replace(meta(5000, dl=3), quota_key=quota_key(b"t" * 16))
    await store.create(limited, other, max_blobs=5, max_bytes=1 << 20)
    await store.append(limited, UT, 0, body(b"d" * 5000), 5000, NOW)
    with ctx.Pool(3) as pool:
        got = await asyncio.to_thread(pool.starmap, _download_once, [(directory, limited)] * 6)
    assert sorted(got) == [False] * 3 + [True] * 3
    assert not list(store.directory.glob(f"{limited.hex()}.*"))
