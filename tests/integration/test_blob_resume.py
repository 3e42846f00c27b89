"""A blob upload cut mid-way and resumed stores exactly the bytes sent (protocol.md §5.9),
through the client's blob transport and a proxy that cuts the connection (tests/cutproxy.py).

Regression: the relay's filesystem store overlaps socket reads with writes of half buffers;
a cut while it waited for a write lost that write to the file's close while the offset
counted it, so the resumed upload skipped 512 KiB of zeros (about one cut in three). The
loop makes a recurrence show within one run."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from cutproxy import CutProxy

from clientlib.crypto.primitives import ed25519_expand_seed, ed25519_public_from_seed, ed25519_sign
from clientlib.transport import HTTPTransport
from clientlib.transport.blobs import BlobTransport
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT
from relay.config import RelayConfig

MIB = 1 << 20


@pytest.mark.parametrize("backend", ["sqlite"])  # the blob store is files on every backend
async def test_cut_uploads_resume_to_the_exact_bytes(
    relay: str, relay_config: RelayConfig, tmp_path: Path
) -> None:
    url = urlsplit(relay)
    assert url.hostname is not None and url.port is not None
    blob_dir = Path(relay_config.data_dir) / "blobs"
    async with aiohttp.ClientSession() as s:
        owner = os.urandom(32)
        sk = ed25519_expand_seed(owner)
        _, sid = await HTTPTransport(s, relay).create_mailbox(
            ed25519_public_from_seed(owner), lambda c: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + c)
        )
        for round_ in range(12):
            data = os.urandom(6 * MIB)
            cut = (2 + round_ % 3) * MIB + round_ * 12_345
            async with CutProxy(url.hostname, url.port, cut_after=cut) as proxy:
                blobs = BlobTransport(s, proxy.url)
                created = await blobs.create(sid, len(data))

                async def body(offset: int, data: bytes = data) -> AsyncIterator[bytes]:
                    for i in range(offset, len(data), MIB):
                        await asyncio.sleep(0)
                        yield data[i : i + MIB]

                await blobs.upload(created.blob, created.ut, len(data), body)
                assert proxy.cuts == 1
            stored = (blob_dir / f"{created.blob.hex()}.blob").read_bytes()
            assert len(stored) == len(data)
            if stored != data:
                first = next(i for i in range(len(data)) if stored[i] != data[i])
                raise AssertionError(f"round {round_}: stored bytes differ from byte {first}")
