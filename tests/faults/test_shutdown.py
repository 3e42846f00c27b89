"""Issue 19, finding 10: a relay that shuts down finishes the WebSocket close handshake of
every socket (bounded) before it exits, on both backends: it sends close 1001 and keeps the
connection until the client's close reply, so clients see 1001, never 1006."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import time
from typing import Any

import pytest
from liverelay import RelayProcess

BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]

#: How long the client waits after the relay's close frame before it replies: a relay that
#: hangs up without waiting for the reply (the finding) is caught closing in this window.
REPLY_DELAY_S = 0.4


class RawSocket:
    """A WebSocket client on a plain socket, so the test decides when to reply to a close."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101")

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """The next frame from the relay: ``(opcode, payload)``."""
        b0, b1 = self._need(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._need(8))
        return b0 & 0x0F, self._need(length)

    def reply_close(self, code: int) -> None:
        mask = os.urandom(4)
        payload = struct.pack("!H", code)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes((0x88, 0x80 | len(payload))) + mask + masked)

    def closed_within(self, seconds: float) -> bool:
        """Whether the relay closes the TCP connection within ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            while True:
                self.buf += self._recv()
        except EOFError:
            return True
        except TimeoutError:
            return False
        except OSError:  # reset
            return True


def _close_handshake(client: RawSocket) -> tuple[int, bool, bool]:
    """Wait for the relay's close frame; return its code, whether the relay hung up before
    our reply, and whether it hung up after it."""
    while True:
        opcode, payload = client.frame()
        if opcode == 0x8:
            break
    code = struct.unpack("!H", payload[:2])[0]
    early = client.closed_within(REPLY_DELAY_S)
    if early:
        return code, True, True
    client.reply_close(code)
    return code, False, client.closed_within(5)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_shutdown_finishes_every_close_handshake(
    backend: str, request: pytest.FixtureRequest, relay_factory: Any
) -> None:
    settings = {}
    if backend == "redis":
        settings = {"storage": "redis", "redis_url": request.getfixturevalue("redis_url")}
    relay: RelayProcess = relay_factory(**settings)
    clients = [RawSocket(relay.port) for _ in range(8)]
    for client in clients:
        opcode, _ = client.frame()  # hello
        assert opcode == 0x2
    assert relay.proc is not None
    started = time.monotonic()
    relay.proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*(asyncio.to_thread(_close_handshake, c) for c in clients))
    assert relay.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    for code, early, closed in results:
        assert code == 1001
        assert not early, "the relay hung up before the client's close reply (1006)"
        assert closed
    for client in clients:
        client.sock.close()
