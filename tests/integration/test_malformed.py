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


async def test_err_echoes_the_request_id_whenever_it_can_be_read(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """protocol.md §3.2: an ``err`` carries the frame's ``id`` whenever the frame is within
    the size limit, of a supported version, one msgpack map, and its ``id`` a u32, whichever
    later check failed; otherwise it has none."""
    http = HTTPClient(session, relay)
    _, sid = await http.create_mailbox(owner)
    good = dep(sid=sid, id=77)
    packed = msgpack.packb(good, use_bin_type=True)
    cases: list[tuple[str, bytes, str, int | None]] = [
        ("unknown type", frame({"t": "nope", "id": 9}), "MALFORMED", 9),
        ("unknown field", frame({**good, "x": 1}), "MALFORMED", 77),
        ("missing field", frame({k: v for k, v in good.items() if k != "eid"}), "MALFORMED", 77),
        ("wrong type", frame({**good, "sid": "a" * 16}), "MALFORMED", 77),
        ("out of range", frame({**good, "flags": 256}), "MALFORMED", 77),
        ("ct above 65,536 bytes", frame({**good, "ct": bytes(65537)}), "MALFORMED", 77),
        ("id is the largest u32", frame({**good, "id": 2**32 - 1, "x": 1}), "MALFORMED", 2**32 - 1),
        ("id above u32", frame({**good, "id": 2**32, "x": 1}), "MALFORMED", None),
        ("id of the wrong type", frame({**good, "id": "77"}), "MALFORMED", None),
        ("trailing byte", b"\x01" + packed + b"\x00", "MALFORMED", None),
        ("unsupported version", b"\x02" + packed, "VERSION", None),
        ("not a map", frame([77]), "MALFORMED", None),
    ]
    async with WSClient(session, relay) as ws:
        for name, data, code, want_id in cases:
            await ws.send_raw(data)
            reply = await ws.next_push(5)
            assert isinstance(reply, ErrorReply), name
            assert (reply.code, reply.id) == (code, want_id), name


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"op": "create", "rid": bytes(16)}, "create with rid"),
        ({"op": "delete"}, "delete without rid"),
        ({"op": "info"}, "info without rid"),
    ],
)
async def test_challenge_binding_mistakes_are_refused_at_chal(
    relay: str, session: aiohttp.ClientSession, fields: dict[str, object], name: str
) -> None:
    """protocol.md §3.1, §4.4: ``rid`` is absent exactly for ``create``; a mistake is
    ``MALFORMED`` at ``chal`` (on both transports), not an ``AUTH`` at ``own`` later."""
    data = frame({"t": "chal", "id": 3, **fields})
    async with WSClient(session, relay) as ws:
        await ws.send_raw(data)
        reply = await ws.next_push(5)
        assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("MALFORMED", 3), name
    status, reply = await HTTPClient(session, relay).post("/v1/challenge", data)
    assert status == 400 and isinstance(reply, ErrorReply) and reply.code == "MALFORMED", name


async def test_sub_challenge_over_http_is_refused_at_chal(
    relay: str, session: aiohttp.ClientSession
) -> None:
    """protocol.md §4.4: ``sub`` needs a socket, so its challenge is refused at ``chal``."""
    data = frame({"t": "chal", "id": 3, "op": "sub", "rid": os.urandom(16)})
    status, reply = await HTTPClient(session, relay).post("/v1/challenge", data)
    assert status == 400 and isinstance(reply, ErrorReply) and reply.code == "MALFORMED"


async def test_ct_size_order_malformed_then_too_large(
    relay_config, make_relay, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """protocol.md §5.1: a ``ct`` longer than 65,536 bytes fails the frame schema
    (``MALFORMED``); a bucket above a relay's lower ``env`` limit is ``TOO_LARGE``."""
    from dataclasses import replace

    url, _ = await make_relay(replace(relay_config, max_envelope_bytes=16384))
    http = HTTPClient(session, url)
    _, sid = await http.create_mailbox(owner)
    status, reply = await http.post("/v1/deposit", frame(dep(sid=sid, ct=bytes(65537))))
    assert (status, reply.code) == (400, "MALFORMED")  # type: ignore[union-attr]
    status, reply = await http.post("/v1/deposit", frame(dep(sid=sid, ct=bytes(32768))))
    assert (status, reply.code) == (413, "TOO_LARGE")  # type: ignore[union-attr]
