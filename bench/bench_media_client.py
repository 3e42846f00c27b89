"""Client-side file throughput (issue 12): ``Client.send_file`` and ``Client.download`` of
one file between two real clients (file keystores, encrypted history, WebSocket) through
an in-process relay on loopback with the SQLite store and the filesystem blob store.

Run: ``python bench/bench_media_client.py [--mib 50] [--rounds 3]``. Prints, per round,
the upload (read, encrypt, PUT, fsync at the relay, seal and queue the message) and the
download (GET, decrypt, verify, fsync, link into place) in MiB/s of plaintext, and the
peak resident memory of the process (client and relay share it, so this bounds both).
An image path is not involved: the file is random bytes (no metadata stripping).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestServer

from clientlib.client import Client, ClientConfig, ContactAdded, MessageReceived, RequestReceived
from relay.app import create_app
from relay.config import RelayConfig
from relay.logging import configure_logging

MIB = 1 << 20


async def _next(client: Client, cls: type, pred: object = None) -> object:
    async for ev in client.events():
        if isinstance(ev, cls) and (pred is None or pred(ev)):  # type: ignore[operator]
            return ev
    raise RuntimeError("closed")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(MIB):
            h.update(piece)
    return h.hexdigest()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(mib: int, rounds: int) -> None:
    configure_logging("warning", "json", stream=io.StringIO())  # the relay's request lines
    d = Path(tempfile.mkdtemp())
    cfg = RelayConfig(data_dir=str(d / "relay"), max_blob_bytes=(mib + 16) * MIB)
    server = TestServer(create_app(cfg), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/"))
    os.environ["CLIENTLIB_INSECURE_TEST_KDF"] = "1"  # keystore cost is not what is measured
    fast = ClientConfig(kdf_strength="minimum")
    src = d / "file.bin"
    with src.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    digest = _sha256(src)
    out = d / "downloads"
    out.mkdir()
    async with (
        Client.create(d / "a", "bench a: long passphrase", relay_url=url, config=fast) as a,
        Client.create(d / "b", "bench b: long passphrase", relay_url=url, config=fast) as b,
    ):
        inv = await a.create_invitation()
        await b.send_request(inv.link, intro="bench")
        req = await _next(a, RequestReceived)
        contact = await a.accept_request(req.request)  # type: ignore[attr-defined]
        await _next(b, ContactAdded)
        rss0 = _rss_mib()
        print(f"file: {mib} MiB of random bytes; rss before: {rss0:.0f} MiB")
        for r in range(rounds):
            t0 = time.perf_counter()
            await a.send_file(contact, src)
            up = time.perf_counter() - t0
            got = await _next(b, MessageReceived, lambda e: e.message.attachment is not None)
            att = got.message.attachment  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            path = await b.download(att, out / f"r{r}.bin")
            down = time.perf_counter() - t0
            ok = _sha256(path) == digest
            path.unlink()
            print(
                f"round {r + 1}: upload {mib / up:6.1f} MiB/s ({up:.2f} s)  "
                f"download {mib / down:6.1f} MiB/s ({down:.2f} s)  sha256 equal: {ok}  "
                f"peak rss {_rss_mib():.0f} MiB"
            )
    await server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.mib, args.rounds))
