"""Attachment blob routes (protocol.md §5.9) against a real in-process relay on loopback,
both backends: upload, resume, download, consent, limits, view-once, expiry, quota, full disk.

Every refusal is checked for its documented code and for having changed nothing: the
upload state, the bytes a download returns and the files in the blob directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import relaydriver
from aiohttp.test_utils import TestServer
from relaydriver import Owner

from clientlib.errors import RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential, WebSocketTransport
from clientlib.wire import (
    BlobCreated,
    BlobOffset,
    Boundaries,
    CreateBlob,
    ErrorReply,
    attachment_capability_hash,
    capability_hash,
    decode_relay_frame,
)
from relay.appkeys import service_key
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
CT = "application/x-blindrelay"
Reply = BlobCreated | BlobOffset | ErrorReply


def secret(n: int) -> bytes:
    value = os.urandom(n)
    relaydriver.remember(value)  # the relay must never log it
    return value


class Blobs:
    """The four blob routes, over plain aiohttp (what a client library would send)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.s = session
        self.base = url.rstrip("/")

    @staticmethod
    async def _frame(resp: aiohttp.ClientResponse) -> tuple[int, Reply]:
        assert resp.headers["Content-Type"] == CT
        _, frame = decode_relay_frame(await resp.read())
        assert isinstance(frame, BlobCreated | BlobOffset | ErrorReply)
        return resp.status, frame

    async def create(self, sid: bytes, size: int, **kw: object) -> tuple[int, Reply]:
        body = CreateBlob(id=7, sid=sid, size=size, **kw).encode()  # type: ignore[arg-type]
        async with self.s.post(
            self.base + "/v1/blob", data=body, headers={"Content-Type": CT}
        ) as resp:
            return await self._frame(resp)

    async def new(self, sid: bytes, size: int, **kw: object) -> BlobCreated:
        status, frame = await self.create(sid, size, **kw)
        assert status == 200 and isinstance(frame, BlobCreated), frame
        relaydriver.remember(frame.blob, frame.ut, frame.rt)
        return frame

    async def put(
        self, blob: bytes | str, ut: bytes | None, offset: int | str, data: object
    ) -> tuple[int, Reply]:
        path = blob if isinstance(blob, str) else blob.hex()
        headers = {"Upload-Offset": str(offset), "Content-Type": "application/octet-stream"}
        if ut is not None:
            headers["Blindrelay-Token"] = ut.hex()
        if isinstance(data, bytes):
            data = io.BytesIO(data)  # aiohttp warns about large bytes bodies; same bytes sent
        async with self.s.put(f"{self.base}/v1/blob/{path}", data=data, headers=headers) as resp:
            return await self._frame(resp)

    async def state(self, blob: bytes, ut: bytes) -> tuple[int, Reply]:
        async with self.s.get(
            f"{self.base}/v1/blob/{blob.hex()}/upload", headers={"Blindrelay-Token": ut.hex()}
        ) as resp:
            return await self._frame(resp)

    async def offset(self, b: BlobCreated) -> tuple[int, int]:
        status, frame = await self.state(b.blob, b.ut)
        assert status == 200 and isinstance(frame, BlobOffset), frame
        return frame.off, frame.done

    async def get(
        self, blob: bytes | str, rt: bytes | None, rng: str | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        path = blob if isinstance(blob, str) else blob.hex()
        headers = {} if rt is None else {"Blindrelay-Token": rt.hex()}
        if rng is not None:
            headers["Range"] = rng
        async with self.s.get(f"{self.base}/v1/blob/{path}", headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)

    async def refused(self, blob: bytes | str, rt: bytes | None, rng: str | None = None) -> str:
        status, body, headers = await self.get(blob, rt, rng)
        assert headers["Content-Type"] == CT and status >= 400
        _, frame = decode_relay_frame(body)
        assert isinstance(frame, ErrorReply)
        return frame.code


def code(reply: tuple[int, Reply]) -> str:
    status, frame = reply
    assert isinstance(frame, ErrorReply), frame
    assert status >= 400
    return frame.code


async def new_mailbox(
    t: HTTPTransport | WebSocketTransport, kind: str = "open", bnd: Boundaries | None = None
) -> tuple[MailboxCredential, bytes]:
    owner = Owner()
    rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind=kind, boundaries=bnd)
    relaydriver.remember(rid, sid)
    return MailboxCredential(rid, owner.sign), sid


def blob_dir(config: RelayConfig) -> Path:
    return config.resolved_blob_dir()


def files(config: RelayConfig) -> set[str]:
    """The blob files on disk (records, partial and complete uploads)."""
    return {p.name for p in blob_dir(config).iterdir() if p.is_file() and p.name[0] != "."}


@pytest.fixture
async def env(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> AsyncIterator[tuple[Blobs, HTTPTransport, RelayConfig, TestServer]]:
    url, server = await make_relay(relay_config)
    yield Blobs(session, url), HTTPTransport(session, url), relay_config, server


Env = tuple[Blobs, HTTPTransport, RelayConfig, TestServer]


async def test_upload_resume_and_download(env: Env) -> None:
    api, t, cfg, _ = env
    _, sid = await new_mailbox(t)
    data = os.urandom(3 * 1024 * 1024 + 17)
    b = await api.new(sid, len(data))
    assert b.exp > time.time()
    assert await api.offset(b) == (0, 0)
    assert {f"{b.blob.hex()}.meta", f"{b.blob.hex()}.part"} <= files(cfg)
    status, frame = await api.put(b.blob, b.ut, 0, data[:1_000_000])
    assert status == 200 and frame == BlobOffset(off=1_000_000, done=0)
    assert await api.offset(b) == (1_000_000, 0)
    # Not readable before it is complete: like a blob that does not exist.
    assert await api.refused(b.blob, b.rt) == "AUTH"

    async def chunks() -> AsyncIterator[bytes]:  # a chunked body (no Content-Length)
        for i in range(1_000_000, len(data), 300_000):
            yield data[i : i + 300_000]

    status, frame = await api.put(b.blob, b.ut, 1_000_000, chunks())
    assert status == 200 and frame == BlobOffset(off=len(data), done=1)
    assert await api.offset(b) == (len(data), 1)
    assert f"{b.blob.hex()}.blob" in files(cfg) and f"{b.blob.hex()}.part" not in files(cfg)
    status, body, headers = await api.get(b.blob, b.rt)
    assert status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Cache-Control"] == "no-store"
    status, body, headers = await api.get(b.blob, b.rt, "bytes=3000000-")
    assert status == 206 and body == data[3_000_000:]
    assert headers["Content-Range"] == f"bytes 3000000-{len(data) - 1}/{len(data)}"
    # Unlimited downloads until expiry.
    assert (await api.get(b.blob, b.rt))[1] == data


async def test_bad_input_changes_nothing(env: Env) -> None:
    api, t, cfg, _ = env
    _, sid = await new_mailbox(t)
    assert code(await api.create(sid, cfg.max_blob_bytes + 1)) == "TOO_LARGE"
    assert code(await api.create(secret(16), 1000)) == "AUTH"  # no such mailbox
    before = files(cfg)
    data = os.urandom(5000)
    b = await api.new(sid, len(data))
    assert files(cfg) - before == {f"{b.blob.hex()}.meta", f"{b.blob.hex()}.part"}
    assert (await api.put(b.blob, b.ut, 0, data[:2000]))[0] == 200
    refusals = {
        "wrong offset": code(await api.put(b.blob, b.ut, 1000, data[1000:3000])),
        "offset ahead": code(await api.put(b.blob, b.ut, 3000, data[3000:])),
        "replayed chunk": code(await api.put(b.blob, b.ut, 0, data[:2000])),
        "tampered replay": code(await api.put(b.blob, b.ut, 0, os.urandom(2000))),
        "past size": code(await api.put(b.blob, b.ut, 2000, data[2000:] + b"x")),
        "wrong token": code(await api.put(b.blob, secret(32), 2000, data[2000:])),
        "read token": code(await api.put(b.blob, b.rt, 2000, data[2000:])),
        "no token": code(await api.put(b.blob, None, 2000, data[2000:])),
        "unknown blob": code(await api.put(secret(16), b.ut, 2000, data[2000:])),
        "bad offset": code(await api.put(b.blob, b.ut, "-1", data[2000:])),
        "hex offset": code(await api.put(b.blob, b.ut, "0x7d0", data[2000:])),
        "upper id": code(await api.put(b.blob.hex().upper(), b.ut, 2000, data[2000:])),
        "short id": code(await api.put(b.blob.hex()[:31], b.ut, 2000, data[2000:])),
    }
    assert refusals == {
        "wrong offset": "MALFORMED",
        "offset ahead": "MALFORMED",
        "replayed chunk": "MALFORMED",
        "tampered replay": "MALFORMED",
        "past size": "TOO_LARGE",
        "wrong token": "AUTH",
        "read token": "AUTH",
        "no token": "AUTH",
        "unknown blob": "AUTH",
        "bad offset": "MALFORMED",
        "hex offset": "MALFORMED",
        "upper id": "MALFORMED",
        "short id": "MALFORMED",
    }

    async def too_long() -> AsyncIterator[bytes]:  # chunked: found out while writing
        yield data[2000:4000]
        yield data[4000:] + b"excess"

    assert code(await api.put(b.blob, b.ut, 2000, too_long())) == "TOO_LARGE"
    assert await api.offset(b) == (2000, 0)  # nothing of the refused bodies was kept
    part = blob_dir(cfg) / f"{b.blob.hex()}.part"
    assert part.read_bytes() == data[:2000]
    assert files(cfg) - before == {f"{b.blob.hex()}.meta", f"{b.blob.hex()}.part"}
    # Path tricks never reach the file system: not an id.
    for trick in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", f"{b.blob.hex()}.meta", "x" * 32):
        status, _, headers = await api.get(trick, b.rt)
        assert status in (400, 404) and headers["Content-Type"] == CT, trick
    # Complete it; then every further PUT is AUTH, like an unknown blob.
    assert (await api.put(b.blob, b.ut, 2000, data[2000:]))[1] == BlobOffset(off=5000, done=1)
    assert code(await api.put(b.blob, b.ut, 5000, b"more")) == "AUTH"
    assert code(await api.put(b.blob, b.ut, 5000, b"")) == "AUTH"
    # Downloads: wrong, missing or upload token, unknown id, bad ranges.
    assert await api.refused(b.blob, secret(32)) == "AUTH"
    assert await api.refused(b.blob, b.ut) == "AUTH"
    assert await api.refused(b.blob, None) == "AUTH"
    assert await api.refused(secret(16), b.rt) == "AUTH"
    for rng in ("bytes=0-10", "bytes=-5", "bytes=1-,5-", "items=0-", "bytes=x-"):
        assert await api.refused(b.blob, b.rt, rng) == "MALFORMED", rng
    assert await api.refused(b.blob, b.rt, "bytes=5000-") == "MALFORMED"  # past the end
    assert (await api.get(b.blob, b.rt))[1] == data  # unchanged after all of that


async def test_resume_after_a_cut_connection(env: Env) -> None:
    api, t, _, server = env
    _, sid = await new_mailbox(t)
    data = os.urandom(2_000_000)
    b = await api.new(sid, len(data))
    # A raw socket announces the whole body, sends part of it and is cut.
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        (
            f"PUT /v1/blob/{b.blob.hex()} HTTP/1.1\r\nHost: relay\r\n"
            f"Blindrelay-Token: {b.ut.hex()}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        + data[:1_234_567]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    deadline = time.monotonic() + 10
    while (off := (await api.offset(b))[0]) < 1_234_567 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert off == 1_234_567  # every byte that arrived was kept
    status, frame = await api.put(b.blob, b.ut, off, data[off:])
    assert status == 200 and frame == BlobOffset(off=len(data), done=1)
    assert (await api.get(b.blob, b.rt))[1] == data


async def test_a_download_cut_mid_stream_and_resumed(env: Env) -> None:
    api, t, _, server = env
    _, sid = await new_mailbox(t)
    data = os.urandom(8 << 20)
    b = await api.new(sid, len(data))
    await api.put(b.blob, b.ut, 0, data)
    _, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"GET /v1/blob/{b.blob.hex()} HTTP/1.1\r\nHost: relay\r\n"
        f"Blindrelay-Token: {b.rt.hex()}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()  # gone after the headers and part of the body
    status, body, _ = await api.get(b.blob, b.rt, "bytes=4194304-")  # resumes
    assert status == 206 and body == data[4 << 20 :]
    assert (await api.get(b.blob, b.rt))[1] == data


async def test_stalled_body_times_out_and_keeps_its_bytes(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, _ = await make_relay(replace(relay_config, body_read_timeout_s=0.5))
    api, t = Blobs(session, url), HTTPTransport(session, url)
    _, sid = await new_mailbox(t)
    b = await api.new(sid, 10_000)

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 4000
        await asyncio.sleep(3)
        yield b"b" * 6000

    assert code(await api.put(b.blob, b.ut, 0, stalls())) == "TIMEOUT"
    assert await api.offset(b) == (4000, 0)


@pytest.mark.parametrize("dl", [1, 2])
async def test_download_limit(env: Env, dl: int) -> None:
    api, t, cfg, _ = env
    _, sid = await new_mailbox(t)
    data = os.urandom(3 << 20)
    b = await api.new(sid, len(data), dl=dl)
    await api.put(b.blob, b.ut, 0, data)
    name = b.blob.hex()
    # HEAD is not a download (a prefetcher must not spend a view-once blob).
    async with api.s.head(
        f"{api.base}/v1/blob/{name}", headers={"Blindrelay-Token": b.rt.hex()}
    ) as r:
        assert r.status == 405
    assert f"{name}.blob" in files(cfg)
    if dl == 2:
        assert (await api.get(b.blob, b.rt, "bytes=10-"))[1] == data[10:]  # a ranged GET counts
        assert f"{name}.blob" in files(cfg)
    headers = {"Blindrelay-Token": b.rt.hex()}
    async with api.s.get(f"{api.base}/v1/blob/{name}", headers=headers) as resp:
        assert resp.status == 200
        # The last allowed download: gone from disk before its body is read.
        assert not {f"{name}.blob", f"{name}.meta", f"{name}.part"} & files(cfg)
        assert await resp.read() == data
    assert await api.refused(b.blob, b.rt) == "AUTH"  # exhausted: like an unknown blob
    assert await api.refused(b.blob, b.rt, "bytes=5-") == "AUTH"


async def test_expiry_and_purge(env: Env) -> None:
    api, t, cfg, server = env
    service = server.app[service_key]
    _, sid = await new_mailbox(t)
    short = await api.new(sid, 100, ttl=30)
    long = await api.new(sid, 100, ttl=10 * cfg.envelope_ttl_s)  # capped at the envelope TTL
    unfinished = await api.new(sid, 100)
    assert long.exp - short.exp == pytest.approx(cfg.envelope_ttl_s - 30, abs=2)
    await api.put(short.blob, short.ut, 0, b"s" * 100)
    await api.put(long.blob, long.ut, 0, b"l" * 100)
    await api.put(unfinished.blob, unfinished.ut, 0, b"u" * 50)
    assert await service.blobs.purge() == 0
    real = service._clock
    service._clock = lambda: real() + 31  # type: ignore[method-assign]
    try:
        assert await api.refused(short.blob, short.rt) == "AUTH"  # refused from that second
        assert code(await api.state(short.blob, short.ut)) == "AUTH"
        assert await service.blobs.purge() == 1
        assert not any(n.startswith(short.blob.hex()) for n in files(cfg))
        service._clock = lambda: real() + cfg.blob_upload_ttl_s + 1  # type: ignore[method-assign]
        assert code(await api.put(unfinished.blob, unfinished.ut, 50, b"u" * 50)) == "AUTH"
        assert await service.blobs.purge() == 1  # the unfinished upload
        names = files(cfg)
        assert not any(n.startswith(unfinished.blob.hex()) for n in names)
        assert f"{long.blob.hex()}.blob" in names
    finally:
        service._clock = real  # type: ignore[method-assign]
    assert (await api.get(long.blob, long.rt))[1] == b"l" * 100


async def test_the_periodic_purge_deletes_expired_blobs(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    """The relay's own purge job (every purge_interval_s) removes an expired blob's files."""
    cfg = replace(relay_config, purge_interval_s=0.5)
    url, _ = await make_relay(cfg)
    api, t = Blobs(session, url), HTTPTransport(session, url)
    _, sid = await new_mailbox(t)
    b = await api.new(sid, 10, ttl=1)
    await api.put(b.blob, b.ut, 0, b"e" * 10)
    assert f"{b.blob.hex()}.blob" in files(cfg)
    deadline = time.monotonic() + 10
    while any(n.startswith(b.blob.hex()) for n in files(cfg)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not any(n.startswith(b.blob.hex()) for n in files(cfg))


async def test_quota_per_destination_mailbox(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    cfg = replace(relay_config, mailbox_max_blobs=2, mailbox_max_blob_bytes=10_000)
    url, server = await make_relay(cfg)
    api, t = Blobs(session, url), HTTPTransport(session, url)
    _, sid = await new_mailbox(t)
    _, other = await new_mailbox(t)
    assert code(await api.create(sid, 10_001)) == "QUOTA"
    first = await api.new(sid, 6000, ttl=60)
    assert code(await api.create(sid, 4001)) == "QUOTA"  # bytes
    await api.new(sid, 4000)
    assert code(await api.create(sid, 1)) == "QUOTA"  # count
    await api.new(other, 10_000)  # another mailbox's quota is its own
    service = server.app[service_key]
    real = service._clock
    service._clock = lambda: real() + 61  # type: ignore[method-assign]
    try:
        await api.new(sid, 6000)  # the expired blob no longer counts
    finally:
        service._clock = real  # type: ignore[method-assign]
    assert code(await api.state(first.blob, first.ut)) == "AUTH"


@pytest.mark.parametrize("kind", ["ws", "http"])
async def test_consent_for_blobs_and_deposits(
    env: Env, session: aiohttp.ClientSession, kind: str
) -> None:
    api, http, _, server = env
    url = api.base + "/"
    async with contextlib.AsyncExitStack() as stack:
        t: HTTPTransport | WebSocketTransport = http
        if kind == "ws":
            t = await stack.enter_async_context(WebSocketTransport(session, url))
        cred, sid = await new_mailbox(t, "pair")
        cap, stranger = secret(32), secret(32)
        await t.set_caps(cred, add=[capability_hash(sid, cap)])
        att = [secret(16)]

        async def deposit(**kw: object) -> str | None:
            try:
                await t.deposit(sid, os.urandom(256), eid=os.urandom(16), **kw)  # type: ignore[arg-type]
            except RelayRejected as exc:
                return exc.code
            return None

        # Media off (no attachment capability): blobs and deposits with att are refused.
        assert code(await api.create(sid, 100, cap=cap)) == "BOUNDARY"
        assert await deposit(cap=cap, att=att) == "BOUNDARY"
        assert await deposit(cap=cap, att=att, flags=1) == "BOUNDARY"  # online-only too
        assert await deposit(cap=cap) is None  # text still flows
        assert code(await api.create(sid, 100, cap=stranger)) == "AUTH"
        assert code(await api.create(sid, 100)) == "AUTH"
        assert await deposit(cap=stranger, att=att) == "AUTH"
        info = await t.mailbox_info(cred)
        assert (info.envelopes, info.caps) == (1, 1)
        # Media on: the owner registers h_att for this contact.
        await t.set_caps(cred, add=[attachment_capability_hash(sid, cap)])
        b = await api.new(sid, 100, cap=cap)
        assert await deposit(cap=cap, att=[b.blob]) is None
        assert (await t.mailbox_info(cred)).envelopes == 2
        # An attachment hash does not stand in for the send capability.
        other_cred, other_sid = await new_mailbox(t, "pair")
        await t.set_caps(other_cred, add=[attachment_capability_hash(other_sid, cap)])
        assert code(await api.create(other_sid, 100, cap=cap)) == "AUTH"
        # Media off again.
        await t.set_caps(cred, remove=[attachment_capability_hash(sid, cap)])
        assert code(await api.create(sid, 100, cap=cap)) == "BOUNDARY"
        assert await deposit(cap=cap, att=att) == "BOUNDARY"
        assert (await t.mailbox_info(cred)).envelopes == 2
        # Contact addresses: boundary att, and a handle.
        closed_cred, closed = await new_mailbox(t, "addr", Boundaries(4096, 0, 10, 0))
        _, open_addr = await new_mailbox(t, "addr", Boundaries(4096, 1, 10, 0))
        assert code(await api.create(closed, 100, hdl=secret(16))) == "BOUNDARY"
        assert code(await api.create(open_addr, 100)) == "BOUNDARY"  # no handle
        await api.new(open_addr, 100, hdl=secret(16))
        # A suspended mailbox takes no blobs: like one that does not exist.
        await server.app[service_key].store.set_suspended(open_addr, True, int(time.time()))
        assert code(await api.create(open_addr, 100, hdl=secret(16))) == "AUTH"
        assert (await t.mailbox_info(closed_cred)).envelopes == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_is_storage_full_and_cut_back(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    small_disk: Path,
) -> None:
    cfg = replace(relay_config, blob_dir=str(small_disk / "blobs"))
    url, _ = await make_relay(cfg)
    api, t = Blobs(session, url), HTTPTransport(session, url)
    _, sid = await new_mailbox(t)
    b = await api.new(sid, 3 << 20)
    assert (await api.put(b.blob, b.ut, 0, b"k" * 100_000))[0] == 200
    assert code(await api.put(b.blob, b.ut, 100_000, os.urandom(2 << 20))) == "STORAGE_FULL"
    assert await api.offset(b) == (100_000, 0)  # where it was
    part = small_disk / "blobs" / f"{b.blob.hex()}.part"
    assert part.stat().st_size == 100_000  # the partial write was cut back
    # The relay keeps serving: a blob that fits still goes through.
    small = await api.new(sid, 1000)
    reply = await api.put(small.blob, small.ut, 0, b"z" * 1000)
    assert reply[1] == BlobOffset(off=1000, done=1)
    assert (await api.get(small.blob, small.rt))[1] == b"z" * 1000
