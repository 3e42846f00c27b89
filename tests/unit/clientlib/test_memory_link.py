"""clientlib.transport.memory: aiohttp's real client and server joined by in-memory pipes.

A small aiohttp application stands in for the relay here (the relay over the link is
covered by tests/integration/test_transport.py); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from aiohttp import web

from clientlib.errors import TransportError
from clientlib.transport.memory import MEMORY_URL, MemoryLink


def echo_app() -> tuple[web.Application, list[object]]:
    """An application that echoes bodies and WebSocket messages, recording its connections."""
    transports: list[object] = []  # kept alive, so that their ids stay distinct
    sockets: set[web.WebSocketResponse] = set()

    async def echo(request: web.Request) -> web.Response:
        transports.append(request.transport)
        body = await request.read()
        resp = web.Response(body=body[::-1])
        if request.query.get("close"):
            resp.force_close()
        return resp

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        sockets.add(sock)
        async for msg in sock:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            if msg.data == b"bye":
                await sock.close(code=4000, message=b"asked")
                break
            await sock.send_bytes(msg.data + b"!")
        return sock

    async def close_sockets(app: web.Application) -> None:  # as the relay does on shutdown
        for sock in list(sockets):
            await sock.close(code=aiohttp.WSCloseCode.GOING_AWAY)

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.on_shutdown.append(close_sockets)
    app.router.add_post("/echo", echo)
    app.router.add_get("/ws", ws)
    return app, transports


async def test_large_bodies_both_ways_and_keep_alive() -> None:
    app, transports = echo_app()
    async with MemoryLink(app) as link:
        assert link.url == MEMORY_URL
        session = link.default_session
        for size in (0, 1, 70_000, 1_000_000):  # past aiohttp's read high-water mark
            body = os.urandom(size)
            async with session.post(link.url + "/echo", data=body) as resp:
                assert resp.status == 200
                assert await resp.read() == body[::-1]
        assert len(transports) == 4
        assert len({id(t) for t in transports}) == 1  # one connection, kept alive and reused


async def test_concurrent_requests_and_server_closed_connections() -> None:
    app, transports = echo_app()
    async with MemoryLink(app) as link, link.session() as session:

        async def one(n: int, close: bool) -> bytes:
            url = link.url + "/echo" + ("?close=1" if close else "")
            async with session.post(url, data=n.to_bytes(4, "big")) as resp:
                return await resp.read()

        got = await asyncio.gather(*(one(n, n % 3 == 0) for n in range(30)))
        assert got == [n.to_bytes(4, "big")[::-1] for n in range(30)]

    # One connection at a time: it is reused until the server closes it.
    app, transports = echo_app()
    async with (
        MemoryLink(app) as link,
        aiohttp.ClientSession(connector=link.connector(limit=1)) as session,
    ):
        for close in (False, False, True, False):
            url = link.url + "/echo" + ("?close=1" if close else "")
            async with session.post(url, data=b"abc") as resp:
                assert await resp.read() == b"cba"
        first, *rest = [id(t) for t in transports]
        assert rest == [first, first, rest[-1]] and rest[-1] != first


async def test_websocket_echo_and_server_close() -> None:
    app, _ = echo_app()
    async with (
        MemoryLink(app) as link,
        link.default_session.ws_connect(link.url + "/ws") as sock,
    ):
        payload = os.urandom(200_000)
        await sock.send_bytes(payload)
        msg = await asyncio.wait_for(sock.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.BINARY and msg.data == payload + b"!"
        await sock.send_bytes(b"bye")
        msg = await asyncio.wait_for(sock.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert sock.close_code == 4000


async def test_closing_the_link_ends_connections_and_refuses_new_ones() -> None:
    app, _ = echo_app()
    link = MemoryLink(app)
    with pytest.raises(RuntimeError):
        link.session()
    async with link:
        session = link.session()
        sock = await session.ws_connect(link.url + "/ws")
        await link.close()
        msg = await asyncio.wait_for(sock.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(link.url + "/echo", data=b"x")
        with pytest.raises(TransportError):
            await link.http(session).boundaries(bytes(16))
        with pytest.raises(RuntimeError):
            link.session()
        await session.close()
    with pytest.raises(RuntimeError):
        await link.__aenter__()  # a link runs once
