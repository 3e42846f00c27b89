"""Files end to end against live relay processes (protocol.md §25, §5.9; issue 12): a 20 MiB
file round-trips with an equal SHA-256 on both backends, an image arrives without its GPS
tags, a view-once file is gone from the relay's disk once downloaded, and a scan of every
byte the relay stored and of both clients' directories finds no plaintext of any file and
no file name; an upload cut mid-way resumes (SQLite: the cut is the client's connection,
the backend plays no part)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from clientkit import befriend, make, wait_for
from cutproxy import CutProxy
from liverelay import RelayProcess
from mediakit import gps_jpeg
from PIL import Image

from clientlib.client import Client, MessageReceived, StoredMessage

pytestmark = pytest.mark.slow

MIB = 1 << 20


async def _receive_file(client: Client) -> StoredMessage:
    got = await wait_for(
        client, MessageReceived, lambda e: e.message.attachment is not None, timeout=60
    )
    return got.message


def _windows(data: bytes, n: int = 16, width: int = 48) -> list[bytes]:
    """``n`` slices of ``data`` spread over it: if a store held the plaintext (or a large part
    of it), one of them would be found."""
    step = max(1, (len(data) - width) // n)
    return [data[i : i + width] for i in range(0, len(data) - width, step)][:n]


def _client_files(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


async def test_files_round_trip_and_nothing_readable_is_stored(
    live_relay: RelayProcess, relay_storage: Any, tmp_path: Path
) -> None:
    homes = {name: tmp_path / name for name in ("alice", "bob")}
    for d in homes.values():
        d.mkdir()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    big = os.urandom(20 * MIB)
    photo = gps_jpeg(size=(400, 300))
    once = os.urandom(300_000)
    names = {"big": "quarterly-figures.bin", "photo": "beach-holiday.jpg", "once": "once.bin"}
    for key, data in (("big", big), ("photo", photo), ("once", once)):
        (tmp_path / names[key]).write_bytes(data)
    async with (
        make(homes["alice"], "alice", live_relay.url) as alice,
        make(homes["bob"], "bob", live_relay.url) as bob,
    ):
        a_bob, _ = await befriend(alice, bob)
        await alice.send_file(a_bob, tmp_path / names["big"])
        got_big = await _receive_file(bob)
        await alice.send_file(a_bob, tmp_path / names["photo"])
        got_photo = await _receive_file(bob)
        await alice.send_file(a_bob, tmp_path / names["once"], view_once=True)
        got_once = await _receive_file(bob)
        assert got_big.attachment is not None and got_big.attachment.size == len(big)
        blob_dir = live_relay.data_dir / "blobs"
        assert len(list(blob_dir.glob("*.blob"))) == 3

        path = await bob.download(got_big.attachment, downloads)
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(big).digest()

        assert got_photo.attachment is not None
        path = await bob.download(got_photo.attachment, downloads)
        with Image.open(path) as img:
            assert len(img.getexif()) == 0 and img.size == (300, 400)
        assert b"SpyCam" not in path.read_bytes() and b"GPS" not in path.read_bytes()

        assert got_once.attachment is not None and got_once.attachment.view_once
        path = await bob.download(got_once.attachment, downloads)
        assert path.read_bytes() == once
        assert len(list(blob_dir.glob("*.blob"))) == 2  # the view-once blob left the disk

        stored = relay_storage.dump()
    stored.update(_client_files(*homes.values()))
    needles = {
        "20 MiB file": _windows(big),
        "photo": _windows(photo),
        "view-once file": _windows(once),
        "file names": [n.encode() for n in names.values()],
        "GPS camera make": [b"SpyCam"],
    }
    for what, windows in needles.items():
        for source, blob in stored.items():
            for w in windows:
                assert w not in blob, f"{what} found in {source}"


@pytest.mark.parametrize("live_relay", ["sqlite"], indirect=True)
async def test_an_upload_cut_mid_way_resumes(tmp_path: Path, live_relay: RelayProcess) -> None:
    url = urlsplit(live_relay.url)
    assert url.hostname is not None and url.port is not None
    data = os.urandom(12 * MIB)
    src = tmp_path / "video.mp4"
    src.write_bytes(data)
    async with (
        CutProxy(url.hostname, url.port, cut_after=5 * MIB) as proxy,
        make(tmp_path, "alice", proxy.url) as alice,
        make(tmp_path, "bob", proxy.url) as bob,
    ):
        a_bob, _ = await befriend(alice, bob)
        await alice.send_file(a_bob, src)
        assert proxy.cuts == 1
        assert proxy.upstream_bytes < len(data) * 1.25  # resumed, not sent again
        m = await _receive_file(bob)
        assert m.attachment is not None
        path = await bob.download(m.attachment, tmp_path / "got.mp4")
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
