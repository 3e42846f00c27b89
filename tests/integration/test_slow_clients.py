"""Slow clients are cut off by the documented timeouts (protocol.md §7; issue 19, items 6
and 14) without starving anyone else: request heads trickled, connections that send nothing,
idle keep-alive connections, bodies trickled, WebSocket frames trickled. Raw sockets, so the
bytes and their timing are exactly what a slowloris client sends."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from dataclasses import replace

import aiohttp
import pytest
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import ErrorReply, decode_relay_frame
from relay.appkeys import metrics_key

HEAD_S = 0.6
KEEPALIVE_S = 1.5
BODY_S = 0.6


@pytest.fixture
def backend() -> str:
    """The timeouts live in the HTTP and WebSocket layers, above storage: one backend."""
    return "sqlite"


@pytest.fixture
async def slow_relay(make_relay, relay_config):  # type: ignore[no-untyped-def]
    cfg = replace(
        relay_config,
        header_read_timeout_s=HEAD_S,
        keepalive_timeout_s=KEEPALIVE_S,
        body_read_timeout_s=BODY_S,
        heartbeat_s=1,
    )
    url, server = await make_relay(cfg)
    return url, server


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def read_all(reader: asyncio.StreamReader, limit: float = 10) -> tuple[bytes, float]:
    """Everything until the relay closes the connection, and when that was (a reset that
    follows the close, when a trickled byte arrives after it, ends the reading too)."""
    data = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data, time.monotonic()


async def trickle(writer: asyncio.StreamWriter, chunks: list[bytes], every: float) -> None:
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass  # the relay hung up: what the test waits for


def err_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    _, reply = decode_relay_frame(body)
    assert isinstance(reply, ErrorReply)
    return status, reply.code


async def test_a_trickled_request_head_is_cut_with_408(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, server = slow_relay
    reader, writer = await connect(url)
    started = time.monotonic()
    lines = [b"POST /v1/deposit HTTP/1.1\r\n"] + [b"X-Slow-%d: 1\r\n" % i for i in range(100)]
    task = asyncio.create_task(trickle(writer, lines, 0.1))
    answer, ended = await read_all(reader)
    task.cancel()
    assert err_code(answer) == (408, "TIMEOUT")
    assert b"Server: blindrelay\r\n" in answer and b"X-Slow" not in answer
    assert HEAD_S - 0.05 <= ended - started < HEAD_S + 1.5
    writer.close()
    text = server.app[metrics_key].render(None, "sqlite")
    assert 'slow_clients_cut_total{kind="header"} 1.0' in text


async def test_a_connection_that_sends_nothing_is_closed(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, _ = slow_relay
    reader, writer = await connect(url)
    started = time.monotonic()
    answer, ended = await read_all(reader)
    assert answer == b""  # nothing was asked, nothing is answered
    assert HEAD_S - 0.05 <= ended - started < HEAD_S + 1.5
    writer.close()


async def test_an_idle_keepalive_connection_lives_until_keepalive_timeout(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, _ = slow_relay
    reader, writer = await connect(url)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    answered = time.monotonic()
    # Past the head deadline, the idle connection still serves a prompt request...
    await asyncio.sleep(HEAD_S + 0.3)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)).startswith(b"HTTP/1.1 200")
    answered = time.monotonic()
    # ...and is closed once idle for keepalive_timeout_s, without an answer.
    rest, ended = await read_all(reader)
    assert rest == b""
    assert KEEPALIVE_S - 0.05 <= ended - answered < KEEPALIVE_S + 1.5
    writer.close()


async def test_a_second_head_trickled_on_a_kept_alive_connection_is_cut(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, _ = slow_relay
    reader, writer = await connect(url)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
    started = time.monotonic()
    lines = [b"GET /healthz HTTP/1.1\r\n"] + [b"X-Slow-%d: 1\r\n" % i for i in range(100)]
    task = asyncio.create_task(trickle(writer, lines, 0.1))
    answer, ended = await read_all(reader)
    task.cancel()
    assert err_code(answer) == (408, "TIMEOUT")
    assert ended - started < HEAD_S + 1.5
    writer.close()


async def test_a_trickled_body_gets_timeout(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, _ = slow_relay
    reader, writer = await connect(url)
    writer.write(
        b"POST /v1/deposit HTTP/1.1\r\nHost: relay\r\nContent-Type: application/x-blindrelay\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    started = time.monotonic()
    task = asyncio.create_task(trickle(writer, [b"\x01"] * 1000, 0.05))
    answer, ended = await read_all(reader)  # the answer, then the relay hangs up
    task.cancel()
    assert err_code(answer) == (408, "TIMEOUT")
    assert BODY_S - 0.05 <= ended - started < BODY_S + 1.5
    writer.close()


async def ws_handshake(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await connect(url)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /v1/ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_ws_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else b"\xfe" + struct.pack("!H", n)
    return bytes([0x80 | opcode]) + length + mask + body


async def test_a_trickled_websocket_frame_closes_with_1008(slow_relay) -> None:  # type: ignore[no-untyped-def]
    url, server = slow_relay
    reader, writer = await ws_handshake(url)
    opcode, _ = await read_ws_frame(reader)  # hello
    assert opcode == 2
    frame = masked(2, bytes(1000))
    started = time.monotonic()
    task = asyncio.create_task(trickle(writer, [frame[i : i + 1] for i in range(len(frame))], 0.05))
    # Pings may come first (heartbeat_s = 1); the relay then closes with 1008.
    while True:
        opcode, payload = await asyncio.wait_for(read_ws_frame(reader), 10)
        if opcode == 8:
            break
    task.cancel()
    assert struct.unpack("!H", payload[:2])[0] == 1008
    assert BODY_S - 0.05 <= time.monotonic() - started < BODY_S + 2
    rest, _ = await read_all(reader)  # and the connection ends
    assert rest == b""
    writer.close()
    text = server.app[metrics_key].render(None, "sqlite")
    assert 'slow_clients_cut_total{kind="ws_message"} 1.0' in text


async def test_an_idle_websocket_that_answers_pings_stays_open(
    slow_relay, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """Idle past every deadline, answering the relay's pings (heartbeat_s = 1): kept, and a
    message split over several TCP writes within the deadline is taken."""
    url, _ = slow_relay
    async with WSClient(session, url) as ws:
        rid, sid = await ws.create_mailbox(owner)
        await asyncio.sleep(max(HEAD_S, KEEPALIVE_S, BODY_S) + 1.5)
        assert ws.ws is not None and not ws.ws.closed
        await ws.deposit(sid, bytes(256))
    http = HTTPClient(session, url)
    assert len((await http.fetch(owner, rid)).envs) == 1


async def test_slow_clients_do_not_starve_others(
    slow_relay, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """60 slowloris sockets (heads, bodies and WebSocket frames trickled) at once: a normal
    client is served promptly meanwhile, and every slow one is cut."""
    url, _ = slow_relay
    http = HTTPClient(session, url)
    rid, sid = await http.create_mailbox(owner)

    async def slow_head() -> bytes:
        reader, writer = await connect(url)
        lines = [b"POST /v1/deposit HTTP/1.1\r\n"] + [b"X-S: 1\r\n"] * 100
        task = asyncio.create_task(trickle(writer, lines, 0.1))
        data, _ = await read_all(reader)
        task.cancel()
        writer.close()
        return data

    async def slow_body() -> bytes:
        reader, writer = await connect(url)
        writer.write(b"POST /v1/deposit HTTP/1.1\r\nHost: r\r\nContent-Length: 900\r\n\r\n")
        task = asyncio.create_task(trickle(writer, [b"\x01"] * 900, 0.1))
        data, _ = await read_all(reader)
        task.cancel()
        writer.close()
        return data

    async def slow_frame() -> bytes:
        reader, writer = await ws_handshake(url)
        await read_ws_frame(reader)
        frame = masked(2, bytes(900))
        task = asyncio.create_task(trickle(writer, [frame[i : i + 1] for i in range(900)], 0.1))
        while True:
            opcode, payload = await asyncio.wait_for(read_ws_frame(reader), 10)
            if opcode == 8:
                break
        task.cancel()
        writer.close()
        return payload

    slow = [asyncio.create_task(f()) for f in (slow_head, slow_body, slow_frame) for _ in range(20)]
    await asyncio.sleep(0.2)
    latencies = []
    for _ in range(10):
        t = time.monotonic()
        await http.deposit(sid, bytes(256))
        latencies.append(time.monotonic() - t)
    assert max(latencies) < 0.5, latencies
    answers = await asyncio.gather(*slow)
    assert all(err_code(a) == (408, "TIMEOUT") for a in answers[:40])
    assert all(struct.unpack("!H", p[:2])[0] == 1008 for p in answers[40:])
    assert len((await http.fetch(owner, rid)).envs) == 10
