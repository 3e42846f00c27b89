"""Fuzz the live relay (issue 19, item 12): random and mutated valid frames to every HTTP
route and over a WebSocket, against the real app on a loopback socket with a real SQLite
store. Every answer is a documented one: an ``err`` frame whose code matches its HTTP status
(protocol.md §6) or a reply frame, never a 5xx or ``INTERNAL``, never a dropped socket
(except close 1009 for an oversized message); a frame answered with an error changes
nothing stored; a well-formed frame is answered on the same socket afterwards."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fuzzkit import binary, fuzz, golden_frames, mutated
from hypothesis import given
from hypothesis import strategies as st
from relaydriver import CT, HTTPClient, Owner

from clientlib.wire import (
    Deposit,
    ErrorReply,
    Fanout,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    RequestChallenge,
    decode_relay_frame,
)
from clientlib.wire.codes import ErrorCode
from relay.app import create_app
from relay.appkeys import metrics_key, service_key
from relay.config import RelayConfig
from relay.errors import HTTP_STATUS

T = TypeVar("T")
ROUTES = (
    "/v1/deposit",
    "/v1/owner",
    "/v1/challenge",
    "/v1/bundle",
    "/v1/boundaries",
    "/v1/pow",
    "/v1/mkeys",
    "/v1/fan",
    "/v1/recall",
    "/v1/blob",
    "/v1/rkeys",
    "/v1/route",
    "/v1/fwd",
)
#: What the relay may answer to anything (INTERNAL and UNAVAILABLE are not among them: the
#: store is healthy, so either would be a relay bug).
DOCUMENTED = {c.value for c in ErrorCode} - {"INTERNAL", "UNAVAILABLE", "STORAGE_FULL"}


@dataclass
class Live:
    loop: asyncio.AbstractEventLoop
    url: str
    server: TestServer
    session: aiohttp.ClientSession
    sid: bytes
    seeds: list[bytes]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def stored(self) -> int:
        count: int = await self.server.app[service_key].count_envelopes()
        return count


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One relay for the module, on its own event loop thread (Hypothesis drives sync tests)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    tmp = tempfile.TemporaryDirectory(prefix="fuzz-relay-")

    async def start() -> Live:
        config = RelayConfig(data_dir=tmp.name, purge_interval_s=3600)
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        session = aiohttp.ClientSession()
        url = str(server.make_url("/"))
        owner = Owner()
        http = HTTPClient(session, url)
        _, sid = await http.create_mailbox(owner)
        nonce = os.urandom(32)
        seeds = [
            Deposit(id=1, sid=sid, eid=os.urandom(16), flags=0, ct=os.urandom(256)).encode(),
            RequestChallenge(id=2, op="create").encode(),
            RequestChallenge(id=3, op="fetch", rid=os.urandom(16)).encode(),
            owner.command(4, op="create", nonce=nonce, key=owner.pk).encode(),
            FetchBundle(id=5, sid=sid).encode(),
            GetBoundaries(id=6, sid=sid).encode(),
            GetPow(id=7, sid=sid).encode(),
            GetModerationKeys(id=8).encode(),
            Fanout(
                id=9, eid=os.urandom(16), flags=0, ct=os.urandom(256), to=sid + bytes(32)
            ).encode(),
            *golden_frames().values(),
        ]
        return Live(loop, url, server, session, sid, seeds)

    state = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    yield state

    async def stop() -> None:
        await state.session.close()
        await state.server.close()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()  # its self-pipe sockets, else a ResourceWarning in a later test
    tmp.cleanup()


def bodies(live_seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(binary(max_size=120), mutated(live_seeds), st.sampled_from(live_seeds))


#: protocol.md §2.1: answers outside the protocol (no such path, method, unparsable request).
SURFACE = {("MALFORMED", 404), ("MALFORMED", 405), ("MALFORMED", 400), ("TOO_LARGE", 431)}


def check_answer(status: int, body: bytes, *, surface: bool = False) -> str:
    """The documented shape of an answer; returns its code ("ok" for a reply)."""
    assert status < 500, status
    _, frame = decode_relay_frame(body)
    if isinstance(frame, ErrorReply):
        assert frame.code in DOCUMENTED, frame.code
        if not (surface and (frame.code, status) in SURFACE):
            assert HTTP_STATUS[ErrorCode(frame.code)] == status, (frame.code, status)
        return frame.code
    assert status == 200
    return "ok"


SEEDS: list[bytes] = []


def _seeds(live: Live) -> list[bytes]:
    if not SEEDS:
        SEEDS.extend(live.seeds)
    return SEEDS


@fuzz(400)
@given(route=st.sampled_from(ROUTES), data=st.data())
def test_http_routes(live: Live, route: str, data: st.DataObject) -> None:
    body = data.draw(bodies(_seeds(live)))

    async def go() -> None:
        before = await live.stored()
        async with live.session.post(
            live.url.rstrip("/") + route, data=body, headers={"Content-Type": CT}
        ) as resp:
            code = check_answer(resp.status, await resp.read())
        if code != "ok":
            assert await live.stored() == before  # an error changed nothing stored

    live.run(go())


@fuzz(150)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from([*ROUTES, "/v1/info", "/v1/ws", "/healthz", "/readyz", "/"]),
        st.text(alphabet="/abcv1-_.%?=", max_size=30).map(lambda p: "/" + p),
    ),
    body=binary(max_size=64),
)
def test_http_methods_and_paths(live: Live, method: str, path: str, body: bytes) -> None:
    """Any method on any path: never a 5xx; every answer outside /healthz, /readyz and
    /metrics is an err frame or a reply frame."""

    async def go() -> None:
        async with live.session.request(
            method, live.url.rstrip("/") + path, data=body, headers={"Content-Type": CT}
        ) as resp:
            raw = await resp.read()
            assert resp.status < 500
            if resp.status in (101, 204) or path.split("?", maxsplit=1)[0] in (
                "/healthz",
                "/readyz",
                "/metrics",
            ):
                return
            check_answer(resp.status, raw, surface=True)

    live.run(go())


@fuzz(300)
@given(data=st.data())
def test_websocket_frames(live: Live, data: st.DataObject) -> None:
    """A burst of fuzzed frames on one socket: each is answered exactly once (a reply or a
    documented error), a burst answered only with errors changed nothing stored, and a
    well-formed frame sent after it is answered (the socket still serves)."""
    frames = data.draw(st.lists(bodies(_seeds(live)), min_size=1, max_size=6))

    async def read(ws: aiohttp.ClientWebSocketResponse) -> Any:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg.type, msg.data)
        return decode_relay_frame(msg.data)[1]

    async def go() -> None:
        before = await live.stored()
        replies = []
        async with live.session.ws_connect(live.url + "v1/ws") as ws:
            await ws.receive()  # hello
            for frame in frames:
                await ws.send_bytes(frame)
            for _ in frames:  # one answer per frame, in any order (requests run concurrently)
                replies.append(await read(ws))
            await ws.send_bytes(GetModerationKeys(id=4_000_000_000).encode())
            last = await read(ws)
            assert not isinstance(last, ErrorReply) and last.id == 4_000_000_000
        for reply in replies:
            if isinstance(reply, ErrorReply):
                assert reply.code in DOCUMENTED, reply.code
        if all(isinstance(r, ErrorReply) for r in replies):
            assert await live.stored() == before

    live.run(go())


def test_the_relay_sent_no_internal_error(live: Live) -> None:
    """After the fuzzing (the last test of the module): no INTERNAL was ever sent."""
    text = live.server.app[metrics_key].render(None, "sqlite")
    assert "errors_total" in text
    assert 'errors_total{kind="INTERNAL"}' not in text
