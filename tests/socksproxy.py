"""SOCKS5 proxies for tests (issue 16, protocol.md §27.2).

* :class:`PProxy`: the ``pproxy`` package's server in its own process (a real, independent
  SOCKS5 implementation); its ``-v`` log names every destination as the client gave it, so
  a host name there shows the name was resolved at the proxy.
* :class:`RecordingSocks`: a small SOCKS5 server (RFC 1928 with RFC 1929 user/password) in
  the test's event loop that forwards like any proxy and records the credentials and the
  destination of every stream, to check stream isolation.
* :func:`connections_to`: which processes hold the established TCP connections to a port,
  read from ``/proc``: what a relay sees as its peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from liverelay import ChildProcess, free_port

# pproxy calls asyncio.get_event_loop() after installing uvloop's policy, which fails on
# Python 3.11 with uvloop present: run it on asyncio's own loop.
_PPROXY = (
    "import sys; sys.modules['uvloop'] = None; sys.argv[0] = 'pproxy'; "
    "import warnings; warnings.simplefilter('ignore'); "
    "from pproxy.server import main; main()"
)


class PProxy(ChildProcess):
    """``pproxy -l socks5://127.0.0.1:<port> -v`` in a subprocess."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _PPROXY, "-l", f"socks5://127.0.0.1:{self.port}", "-v"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pproxy exited: " + self.log_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pproxy did not start")



class RecordingSocks:
    """A forwarding SOCKS5 server that records ``(username, host, port)`` of each stream."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, str, int]] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ver, n = await r.readexactly(2)
            methods = await r.readexactly(n)
            if ver != 5 or 2 not in methods:
                w.write(b"\x05\xff")
                return
            w.write(b"\x05\x02")  # username/password (RFC 1929)
            _, ulen = await r.readexactly(2)
            user = (await r.readexactly(ulen)).decode()
            (plen,) = await r.readexactly(1)
            await r.readexactly(plen)
            w.write(b"\x01\x00")
            _, cmd, _, atyp = await r.readexactly(4)
            if atyp == 3:
                (hlen,) = await r.readexactly(1)
                host = (await r.readexactly(hlen)).decode()
            elif atyp == 1:
                host = socket.inet_ntoa(await r.readexactly(4))
            else:
                host = socket.inet_ntop(socket.AF_INET6, await r.readexactly(16))
            port = int.from_bytes(await r.readexactly(2), "big")
            if cmd != 1:
                w.write(b"\x05\x07\x00\x01" + bytes(6))
                return
            self.streams.append((user, host, port))
            ur, uw = await asyncio.open_connection(
                "127.0.0.1" if host == "localhost" else host, port
            )
            w.write(b"\x05\x00\x00\x01" + bytes(6))
            await asyncio.gather(_pipe(r, uw), _pipe(ur, w))
        except (OSError, asyncio.IncompleteReadError, UnicodeDecodeError):
            pass
        finally:
            with contextlib.suppress(Exception):
                w.close()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            w.close()


def connections_to(port: int) -> dict[int, int]:
    """``{pid: established TCP connections to 127.0.0.1:port or [::1]:port}`` from /proc."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                remote, state, inode = cols[2], cols[3], cols[9]
                if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    owners: dict[int, int] = {}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (pid_dir / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        owners[int(pid_dir.name)] = owners.get(int(pid_dir.name), 0) + 1
    return owners
