"""Client end-to-end benchmark: two real ``clientlib.Client``s (file keystores, encrypted
history, WebSocket) through an in-process relay on loopback with the SQLite store.

Run: ``python bench/bench_client.py [--messages N]``. Prints how long ``send()`` takes (seal,
durable outbox and history writes), the end-to-end rate one way, the rate with both sides
sending at once, and the latency of single ``send()`` calls 30 ms apart. ``--memory`` keeps
keystores and histories in memory, which leaves the CPU of a send (no fsync). Every message
is durably stored by the receiver before it is acked.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestServer

from clientlib.client import Client, ClientConfig, ContactAdded, MessageReceived, RequestReceived
from relay.app import create_app
from relay.config import RelayConfig


async def _next(client: Client, cls: type) -> object:
    async for ev in client.events():
        if isinstance(ev, cls):
            return ev
    raise RuntimeError("closed")


async def _receive(client: Client, n: int) -> None:
    got = 0
    async for ev in client.events():
        if isinstance(ev, MessageReceived):
            got += 1
            if got == n:
                return


async def main(n: int, memory: bool = False) -> None:
    d = Path(tempfile.mkdtemp())
    server = TestServer(create_app(RelayConfig(data_dir=str(d / "relay"))), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/"))
    os.environ["CLIENTLIB_INSECURE_TEST_KDF"] = "1"  # keystore cost is not what is measured
    fast = ClientConfig(kdf_strength="minimum")
    async with (
        Client.create(
            None if memory else d / "a",
            "bench a: long passphrase",
            relay_url=url,
            name="a",
            config=fast,
        ) as a,
        Client.create(
            None if memory else d / "b",
            "bench b: long passphrase",
            relay_url=url,
            name="b",
            config=fast,
        ) as b,
    ):
        t = time.perf_counter()
        await b.send_request(await a.create_invitation())
        req = await _next(a, RequestReceived)
        ca = await a.accept_request(req.request)  # type: ignore[attr-defined]
        cb = (await _next(b, ContactAdded)).contact  # type: ignore[attr-defined]
        setup = time.perf_counter() - t
        t0 = time.perf_counter()
        for i in range(n):
            await b.send(cb, f"m{i}")
        t1 = time.perf_counter()
        await _receive(a, n)
        t2 = time.perf_counter()
        both = asyncio.gather(
            *(x.send(c, f"x{i}") for i in range(n) for x, c in ((a, ca), (b, cb)))
        )
        t3 = time.perf_counter()
        await both
        await asyncio.gather(_receive(a, n), _receive(b, n))
        t4 = time.perf_counter()
        # Paced: one send() at a time with 30 ms between them (the receiver has processed
        # the previous one, and background work such as preparing the next AMF signature
        # has run), as a person sends; the latency of each call.
        paced = []
        for i in range(min(n, 200)):
            await asyncio.sleep(0.03)
            t = time.perf_counter()
            await b.send(cb, f"p{i}")
            paced.append(time.perf_counter() - t)
        await _receive(a, len(paced))
    await server.close()
    print(f"contact setup (invite, request with proof of work, accept): {setup * 1e3:.0f} ms")
    print(f"send(): {(t1 - t0) / n * 1e3:.2f} ms each ({n / (t1 - t0):.0f}/s)")
    print(f"one way, end to end: {n / (t2 - t0):.0f} messages/s")
    print(f"both ways at once: {2 * n / (t4 - t3):.0f} messages/s")
    paced.sort()
    p50, p90 = statistics.median(paced), paced[int(len(paced) * 0.9)]
    print(
        f"paced send() latency: p50 {p50 * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms ({len(paced)} sends)"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument(
        "--memory", action="store_true", help="in-memory keystores and histories (no fsync)"
    )
    args = ap.parse_args()
    asyncio.run(main(args.messages, args.memory))
