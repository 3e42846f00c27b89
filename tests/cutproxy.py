"""A loopback TCP forwarder that cuts a connection in the middle: the first connection that
carries more than ``cut_after`` bytes towards the relay (or ``cut_down_after`` bytes back
from it) is closed, both ways, right there, once; later connections pass untouched. For the
resumable upload and download tests (protocol.md §5.9): what a dropped mobile connection
does to a long PUT or GET."""

from __future__ import annotations

import asyncio
import contextlib


class CutProxy:
    """``async with CutProxy(host, port, cut_after=n) as proxy: proxy.url ...``"""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        cut_after: int | None = None,
        cut_down_after: int | None = None,
    ) -> None:
        self._target = (host, port)
        self.cut_after = cut_after
        self.cut_down_after = cut_down_after
        self.cuts = 0
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        await self._server.wait_closed()

    def _count(self, up: bool, n: int) -> None:
        if up:
            self.upstream_bytes += n
        else:
            self.downstream_bytes += n

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_w}

        def close() -> None:
            for w in (writer, up_w):
                w.close()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            sent = 0
            limit = self.cut_after if up else self.cut_down_after
            while data := await src.read(65536):
                if limit is not None and self.cuts == 0 and sent + len(data) > limit:
                    dst.write(data[: limit - sent])
                    await dst.drain()
                    self._count(up, limit - sent)
                    self.cuts += 1
                    close()
                    return
                sent += len(data)
                self._count(up, len(data))
                dst.write(data)
                await dst.drain()
            dst.close()

        async def upstream() -> None:
            await pipe(reader, up_w, True)

        async def downstream() -> None:
            await pipe(up_r, writer, False)

        tasks = {asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())}
        self._tasks |= tasks
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            close()
            self._tasks -= tasks
            self._writers -= {writer, up_w}
