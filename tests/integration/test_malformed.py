"""Malformed input gets the documented error, changes nothing, and the relay keeps serving."""

from __future__ import annotations

import os

import aiohttp
import msgpack
import pytest
from relaydriver import CT, HTTPClient, Owner, WSClient

from clientlib.wire import MAX_FRAME_SIZE, ErrorReply, decode_relay_frame


def frame(fields: object, version: int = 1) -> bytes:
    return bytes([version]) + msgpack.packb(fields, use_bin_type=True)


def dep(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "t": "dep",
        "id": 5,
        "sid": os.urandom(16),
        "eid": os.urandom(16),
        "flags": 0,
        "ct": bytes(256),
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def bad_inputs(sid: bytes) -> list[tuple[str, bytes, str]]:
    good = dep(sid=sid)
    packed = msgpack.packb(good, use_bin_type=True)
    cases = [
        ("empty", b"", "MALFORMED"),
        ("one byte", b"\x01", "MALFORMED"),
        ("random bytes", b"\x01" + bytes.fromhex("c1c1c1c1deadbeef"), "MALFORMED"),
        ("reserved version 0", b"\x00" + packed, "VERSION"),
        ("future version", b"\x02" + packed, "VERSION"),
        ("not a map", frame([1, 2, 3]), "MALFORMED"),
        ("unknown type", frame({"t": "nope", "id": 1}), "MALFORMED"),
        ("missing field", frame({k: v for k, v in good.items() if k != "eid"}), "MALFORMED"),
        ("unknown field", frame({**good, "x": 1}), "MALFORMED"),
        ("wrong type str for bin", frame({**good, "sid": "a" * 16}), "MALFORMED"),
        ("bool for int", frame({**good, "flags": True}), "MALFORMED"),
        ("float for int", frame({**good, "flags": 0.0}), "MALFORMED"),
        ("negative id", frame({**good, "id": -1}), "MALFORMED"),
        ("short sid", frame({**good, "sid": b"x" * 15}), "MALFORMED"),
        ("unpadded ct", frame({**good, "ct": bytes(300)}), "MALFORMED"),
        ("undefined flag", frame({**good, "flags": 2}), "MALFORMED"),
        ("trailing bytes", b"\x01" + packed + b"\x00", "MALFORMED"),
        ("bytes key", b"\x01" + msgpack.packb({b"t": "dep"}, use_bin_type=True), "MALFORMED"),
        ("int key", b"\x01" + msgpack.packb({1: "dep"}, use_bin_type=True), "MALFORMED"),
        (
            "ext type",
            b"\x01" + msgpack.packb({"t": msgpack.ExtType(1, b"x")}, use_bin_type=True),
            "MALFORMED",
        ),
        ("deep nesting", b"\x01\x81\xa1t" + b"\x91" * 2000 + b"\x00", "MALFORMED"),
        ("nested where scalar", frame({**good, "id": [[[[1]]]]}), "MALFORMED"),
        ("huge declared array", b"\x01\xdd\xff\xff\xff\xff", "MALFORMED"),
        ("huge declared bin", b"\x01\x81\xa1t\xc6\xff\xff\xff\xff", "MALFORMED"),
        ("huge declared map", b"\x01\xdf\xff\xff\xff\xff", "MALFORMED"),
        ("truncated", b"\x01" + packed[:-10], "MALFORMED"),
        ("invalid utf-8", b"\x01\x81\xa1t\xa2\xff\xfe", "MALFORMED"),
    ]
    dup = (
        b"\x01\x87"
        + b"".join(msgpack.packb(k) + msgpack.packb(v, use_bin_type=True) for k, v in good.items())
        + msgpack.packb("id")
        + msgpack.packb(6)
    )
    cases.append(("duplicate key", dup, "MALFORMED"))
    return cases


async def stored_count(http: HTTPClient, owner: Owner, rid: bytes) -> int:
    return len((await http.fetch(owner, rid, max=256)).envs)


async def test_websocket_malformed(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    await http.deposit(sid, bytes(256))
    async with WSClient(session, relay) as ws:
        for name, data, code in bad_inputs(sid):
            await ws.send_raw(data)
            reply = await ws.next_push(5)
            assert isinstance(reply, ErrorReply), name
            assert reply.code == code, name
        # Text frames are not frames.
        assert ws.ws is not None
        await ws.ws.send_str("hello")
        reply = await ws.next_push(5)
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED"
        # Still serving on the same socket, and nothing was stored.
        await ws.deposit(sid, bytes(256))
    assert await stored_count(http, owner, rid) == 2


async def test_http_malformed(relay: str, session: aiohttp.ClientSession, owner: Owner) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    for path in ("/v1/deposit", "/v1/owner", "/v1/challenge"):
        for name, data, code in bad_inputs(sid):
            status, reply = await http.post(path, data)
            assert isinstance(reply, ErrorReply), (path, name)
            if (
                path == "/v1/deposit"
                or code != "MALFORMED"
                or name not in ("unpadded ct", "undefined flag")
            ):
                assert reply.code == code, (path, name)
            assert status in (400, 413), (path, name)
    # A deposit frame posted to the wrong route is MALFORMED.
    status, reply = await http.post("/v1/owner", frame(dep(sid=sid)))
    assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED" and status == 400
    assert await stored_count(http, owner, rid) == 0
    await http.deposit(sid, bytes(256))
    assert await stored_count(http, owner, rid) == 1


async def test_oversized_inputs(relay: str, session: aiohttp.ClientSession, owner: Owner) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    big = frame(dep(sid=sid, ct=bytes(MAX_FRAME_SIZE)))  # a frame above the relay's limit
    status, reply = await http.post("/v1/deposit", big)
    assert status == 413 and isinstance(reply, ErrorReply) and reply.code == "TOO_LARGE"

    # An HTTP body sent chunked (no Content-Length) is bounded too.
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield bytes(8192)

    async with session.post(
        relay + "v1/deposit", data=chunks(), headers={"Content-Type": CT}
    ) as resp:
        assert resp.status == 413
        _, reply = decode_relay_frame(await resp.read())
        assert isinstance(reply, ErrorReply) and reply.code == "TOO_LARGE"
    # Over WebSocket the socket is closed with 1009.
    async with WSClient(session, relay) as ws:
        assert ws.ws is not None
        await ws.ws.send_bytes(big)
        with pytest.raises((ConnectionError, TimeoutError, aiohttp.ClientError)):
            for _ in range(3):
                await ws.deposit(sid, bytes(256))
        assert ws.ws.closed
        assert ws.ws.close_code == 1009
    # The relay keeps serving.
    await http.deposit(sid, bytes(256))
    assert await stored_count(http, owner, rid) == 1


async def test_wrong_routes_and_methods(relay: str, session: aiohttp.ClientSession) -> None:
    async with session.get(relay + "v1/deposit") as r:
        assert r.status == 405
    async with session.get(relay + "v2/info") as r:
        assert r.status == 404
