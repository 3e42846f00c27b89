"""Every row of protocol.md §7's limits table, on a live relay: exactly at the limit is
accepted, one over gets the documented answer (on both transports where both apply).

``test_every_row_of_the_limits_table_has_a_test`` reads the table from protocol.md and fails
when a row has no entry in ``ROWS``, so a new limit cannot be added without its test.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import replace
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp.test_utils import TestServer
from relaydriver import CT, HTTPClient, Owner, RelayRejectedError, WSClient

from clientlib.wire import (
    MAX_FRAME_SIZE,
    Deposit,
    EnvelopeDelivered,
    ErrorReply,
    GetModerationKeys,
    GetPow,
    OwnerCommand,
    SignedOwnerCommand,
    decode_relay_frame,
)
from clientlib.wire.limits import MAX_ENVELOPE_SIZE, MAX_OWNER_COMMAND_SIZE

ROOT = Path(__file__).resolve().parents[2]


def frame(fields: dict[str, object], version: int = 1) -> bytes:
    return bytes([version]) + msgpack.packb(fields, use_bin_type=True)


def padded(size: int, fields: dict[str, object], pad_key: str) -> bytes:
    """``fields`` as a frame of exactly ``size`` bytes, ``pad_key`` (a bin) grown to fit."""
    n = max(0, size - len(frame({**fields, pad_key: b""})))
    while True:
        data = frame({**fields, pad_key: bytes(n)})
        if len(data) == size:
            return data
        n += size - len(data)  # the bin header grew (or shrank) by a byte or two


def report_cmd(size: int) -> bytes:
    """A ``report`` owner command of exactly ``size`` bytes (padded through ``atts``)."""
    base = OwnerCommand(
        op="report",
        nonce=os.urandom(32),
        rid=os.urandom(16),
        msg=b"m",
        fk=os.urandom(32),
        fc=os.urandom(32),
        ft=os.urandom(32),
        fx=os.urandom(20),
        snd=os.urandom(32),
        rcp=os.urandom(32),
        why="spam",
        amf=os.urandom(448),
        akid=1,
    )
    head = base.encode()
    fields = msgpack.unpackb(head[1:], raw=False)  # version byte || msgpack map
    # atts: up to 16 bins of up to 81,920 bytes each; one bin is plenty.
    n = max(0, size - len(frame({**fields, "atts": [b""]})))
    while True:
        cmd = frame({**fields, "atts": [bytes(n)]})
        if len(cmd) == size:
            return cmd
        n += size - len(cmd)


def own_frame(owner: Owner, cmd: bytes, request_id: int = 9) -> bytes:
    return SignedOwnerCommand(id=request_id, cmd=cmd, sig=owner.sign(cmd)).encode()


async def post(session: aiohttp.ClientSession, url: str, path: str, body: bytes) -> tuple[int, str]:
    async with session.post(url.rstrip("/") + path, data=body, headers={"Content-Type": CT}) as r:
        _, reply = decode_relay_frame(await r.read())
        assert isinstance(reply, ErrorReply) or r.status == 200
        return r.status, (reply.code if isinstance(reply, ErrorReply) else type(reply).__name__)


async def ws_answer(ws: WSClient, data: bytes) -> str:
    await ws.send_raw(data)
    reply = await ws.next_push(10)
    assert isinstance(reply, ErrorReply)
    return reply.code


async def ws_closed_by(ws: WSClient, data: bytes) -> int | None:
    """Send ``data`` and return the close code the relay answers with."""
    assert ws.ws is not None and ws._reader is not None
    await ws.ws.send_bytes(data)
    await asyncio.wait_for(ws._reader, 10)  # the driver's reader ends at the close
    assert ws.ws.closed
    return ws.ws.close_code


def dep(sid: bytes, ct: bytes, **over: object) -> dict[str, object]:
    return {"t": "dep", "id": 5, "sid": sid, "eid": os.urandom(16), "flags": 0, "ct": ct, **over}


# --- frame (WebSocket message, HTTP body) -------------------------------------------------


async def test_frame_limit(relay: str, session: aiohttp.ClientSession) -> None:
    """82,944 bytes are decoded (an unknown field: ``MALFORMED``); 82,945 are refused before
    decoding: ``TOO_LARGE`` (413) over HTTP, close 1009 on a WebSocket (issue 19, item 8)."""
    assert MAX_FRAME_SIZE == 82_944
    at = padded(MAX_FRAME_SIZE, {"t": "dep", "id": 3}, "x")
    over = padded(MAX_FRAME_SIZE + 1, {"t": "dep", "id": 3}, "x")
    assert (len(at), len(over)) == (82_944, 82_945)
    for path in ("/v1/deposit", "/v1/owner", "/v1/challenge", "/v1/bundle"):
        assert await post(session, relay, path, at) == (400, "MALFORMED"), path
        assert await post(session, relay, path, over) == (413, "TOO_LARGE"), path
    async with WSClient(session, relay) as ws:
        assert ws.hello is not None and ws.hello.limits.max_frame == MAX_FRAME_SIZE
        assert await ws_answer(ws, at) == "MALFORMED"
        assert await ws_answer(ws, at) == "MALFORMED"  # still open, still serving
        assert ws.ws is not None
        assert await ws_closed_by(ws, over) == 1009


async def test_frame_limit_counts_a_text_message_in_bytes(
    relay: str, session: aiohttp.ClientSession
) -> None:
    """A text message is answered ``MALFORMED`` within the limit, closed with 1009 above it."""
    async with session.ws_connect(relay + "v1/ws") as ws:
        await ws.receive()  # hello
        await ws.send_str("é" * (MAX_FRAME_SIZE // 2))  # 82,944 bytes of UTF-8
        msg = await ws.receive()
        _, reply = decode_relay_frame(msg.data)
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED"
        await ws.send_str("é" * (MAX_FRAME_SIZE // 2) + "a")  # 82,945 bytes
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009


# --- envelope ct -----------------------------------------------------------------------------


async def test_envelope_ct_limit(relay: str, session: aiohttp.ClientSession, owner: Owner) -> None:
    """A 65,536-byte ``ct`` is stored on both transports; 65,537 is ``MALFORMED`` (schema);
    a bucket above a lower ``max_envelope_bytes`` is ``TOO_LARGE`` (next test)."""
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    assert await post(session, relay, "/v1/deposit", frame(dep(sid, bytes(MAX_ENVELOPE_SIZE)))) == (
        200,
        "Ok",
    )
    over = frame(dep(sid, bytes(MAX_ENVELOPE_SIZE + 1)))
    assert await post(session, relay, "/v1/deposit", over) == (400, "MALFORMED")
    async with WSClient(session, relay) as ws:
        await ws.deposit(sid, bytes(MAX_ENVELOPE_SIZE))
        assert await ws_answer(ws, over) == "MALFORMED"
    assert [len(e.ct) for e in (await http.fetch(owner, rid)).envs] == [65_536, 65_536]


async def test_envelope_limit_below_the_maximum(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    url, _ = await make_relay(replace(relay_config, max_envelope_bytes=16_384))
    http = HTTPClient(session, url)
    rid, sid = await http.create_mailbox(owner)
    assert await post(session, url, "/v1/deposit", frame(dep(sid, bytes(16_384)))) == (200, "Ok")
    over = frame(dep(sid, bytes(32_768)))  # the next bucket
    assert await post(session, url, "/v1/deposit", over) == (413, "TOO_LARGE")
    async with WSClient(session, url) as ws:
        assert await ws_answer(ws, over) == "TOO_LARGE"
    assert len((await http.fetch(owner, rid)).envs) == 1


# --- owner command -----------------------------------------------------------------------------


async def test_owner_command_limit(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """An owner command of 81,920 bytes is decoded and checked (its challenge is unknown:
    ``AUTH``); 81,921 bytes is ``MALFORMED``, on both transports."""
    assert MAX_OWNER_COMMAND_SIZE == 81_920
    at, over = report_cmd(MAX_OWNER_COMMAND_SIZE), report_cmd(MAX_OWNER_COMMAND_SIZE + 1)
    assert (len(at), len(over)) == (81_920, 81_921)
    assert await post(session, relay, "/v1/owner", own_frame(owner, at)) == (403, "AUTH")
    assert await post(session, relay, "/v1/owner", own_frame(owner, over)) == (400, "MALFORMED")
    async with WSClient(session, relay) as ws:
        assert await ws_answer(ws, own_frame(owner, at)) == "AUTH"
        assert await ws_answer(ws, own_frame(owner, over)) == "MALFORMED"


# --- owner-command contents: prekeys, acks, fetch pages, caps, bans, attachments -------------


def raw_cmd(**fields: object) -> bytes:
    """An owner command built by hand (the encoder refuses values beyond the schema)."""
    return frame({k: v for k, v in fields.items() if v is not None})


async def signed(
    transport: WSClient | HTTPClient, owner: Owner, op: str, rid: bytes | None, **fields: object
) -> bytes:
    """A fresh challenge for ``op`` and a signed ``own`` frame around the raw command."""
    nonce = await transport.challenge(op, rid)
    return own_frame(owner, raw_cmd(op=op, nonce=nonce, rid=rid, **fields), request_id=11)


async def ws_reply(ws: WSClient, data: bytes, request_id: int) -> str:
    """Send ``data`` (a frame with ``id`` = ``request_id``) and return its answer's code or
    reply type (pushes on the socket are left alone)."""
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    ws.pending[request_id] = fut  # type: ignore[assignment]
    await ws.send_raw(data)
    reply = await asyncio.wait_for(fut, 10)
    return reply.code if isinstance(reply, ErrorReply) else type(reply).__name__


async def both(session: aiohttp.ClientSession, url: str) -> list[WSClient | HTTPClient]:
    ws = WSClient(session, url)
    await ws.__aenter__()
    return [HTTPClient(session, url), ws]


async def own(
    t: WSClient | HTTPClient,
    session: aiohttp.ClientSession,
    url: str,
    owner: Owner,
    op: str,
    rid: bytes | None,
    **fields: object,
) -> str:
    data = await signed(t, owner, op, rid, **fields)
    if isinstance(t, WSClient):
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        t.pending[11] = fut  # type: ignore[assignment]
        await t.send_raw(data)
        reply = await asyncio.wait_for(fut, 10)
        return reply.code if isinstance(reply, ErrorReply) else type(reply).__name__
    return (await post(session, url, "/v1/owner", data))[1]


async def test_prekey_sizes_and_items_per_upload(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """A static part of 4,096 bytes, items of 2,048 and 32 items per ``keys`` are taken; one
    byte or one item more is ``MALFORMED``, on both transports."""
    for t in await both(session, relay):
        rid, _ = await t.create_mailbox(owner)
        ok = await own(
            t, session, relay, owner, "keys", rid, static=bytes(4096), otk=[bytes(2048)] * 32
        )
        assert ok == "PreKeysStored"
        for over in (
            {"static": bytes(4097)},
            {"otk": [bytes(2049)]},
            {"otk": [bytes(100)] * 33},
        ):
            assert await own(t, session, relay, owner, "keys", rid, **over) == "MALFORMED"
        if isinstance(t, WSClient):
            await t.__aexit__()


async def test_acks_per_frame_and_envelopes_per_fetch(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """256 acks in a ``fetch`` or ``ack`` are taken, 257 are ``MALFORMED``; ``max`` 256 is
    taken, 257 ``MALFORMED``; a page holds at most 256 envelopes and 1 MiB of ``ct``, with
    ``more`` = 1 when more wait."""
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    async with WSClient(session, relay) as ws:
        for batch in (200, 57):  # within max_inflight_requests
            await asyncio.gather(*(ws.deposit(sid, bytes(256)) for _ in range(batch)))
    page = await http.fetch(owner, rid, max=256)
    assert len(page.envs) == 256 and page.more == 1
    seqs = [e.seq for e in page.envs]
    assert await own(http, session, relay, owner, "fetch", rid, max=257) == "MALFORMED"
    assert (
        await own(http, session, relay, owner, "fetch", rid, ack=list(range(1, 258))) == "MALFORMED"
    )
    async with WSClient(session, relay) as ws:
        await ws.subscribe(owner, rid)
        over = frame({"t": "ack", "id": 12, "rid": rid, "seqs": list(range(1, 258))})
        assert await ws_reply(ws, over, 12) == "MALFORMED"
        assert await ws.ack(rid, seqs) is not None  # 256 at once
    assert len((await http.fetch(owner, rid, max=256)).envs) == 1


async def test_a_page_holds_at_most_a_mebibyte_of_ct(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    for _ in range(17):
        await http.deposit(sid, bytes(65536))
    page = await http.fetch(owner, rid, max=256)
    assert len(page.envs) == 16 and page.more == 1  # 16 x 64 KiB = 1 MiB exactly


async def test_attachment_ids_per_deposit(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """16 attachment ids in a ``dep`` are taken, 17 are ``MALFORMED`` (both transports)."""
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    at = frame(dep(sid, bytes(256), att=[os.urandom(16) for _ in range(16)]))
    over = frame(dep(sid, bytes(256), att=[os.urandom(16) for _ in range(17)]))
    assert await post(session, relay, "/v1/deposit", at) == (200, "Ok")
    assert await post(session, relay, "/v1/deposit", over) == (400, "MALFORMED")
    async with WSClient(session, relay) as ws:
        assert await ws_answer(ws, over) == "MALFORMED"
    assert len((await http.fetch(owner, rid)).envs) == 1


async def test_fan_entries_and_ciphertext(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """A ``fan`` of 1,000 entries and a 32,768-byte ``ct`` is answered; 1,001 entries, or
    the next ``ct`` bucket, is ``TOO_LARGE`` (both transports)."""
    http = HTTPClient(session, relay)
    _, sid = await http.create_mailbox(owner)

    def fan(n: int, size: int) -> bytes:
        to = b"".join(os.urandom(16) + bytes(32) for _ in range(n - 1)) + sid + bytes(32)
        return frame(
            {"t": "fan", "id": 8, "eid": os.urandom(16), "flags": 0, "ct": bytes(size), "to": to}
        )

    assert await post(session, relay, "/v1/fan", fan(1000, 32768)) == (200, "FanoutDone")
    for over in (fan(1001, 256), fan(2, 65536)):
        assert await post(session, relay, "/v1/fan", over) == (413, "TOO_LARGE")
        async with WSClient(session, relay) as ws:
            assert await ws_answer(ws, over) == "TOO_LARGE"


async def test_capability_hashes_and_handles_per_command(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """64 capability hashes in a ``caps`` command (``add`` and ``del`` each) and 64 handles in
    a ``ban`` command (``hdl`` and ``unban`` each) are taken; 65 are ``MALFORMED``, on both
    transports."""
    for t in await both(session, relay):
        rid = await _last_created(t, session, relay, owner, kind="pair")
        hashes = [os.urandom(32) for _ in range(65)]
        assert await own(t, session, relay, owner, "caps", rid, add=hashes[:64]) == "Ok"
        assert await own(t, session, relay, owner, "caps", rid, add=hashes) == "MALFORMED"
        assert await own(t, session, relay, owner, "caps", rid, **{"del": hashes}) == "MALFORMED"
        assert await own(t, session, relay, owner, "caps", rid, **{"del": hashes[:64]}) == "Ok"
        bnd = {"size": 2048, "att": 0, "day": 100, "pow": 0}
        addr = await _last_created(t, session, relay, owner, kind="addr", bnd=bnd)
        handles = [os.urandom(16) for _ in range(65)]
        assert await own(t, session, relay, owner, "ban", addr, hdl=handles[:64]) == "Ok"
        assert await own(t, session, relay, owner, "ban", addr, hdl=handles) == "MALFORMED"
        assert await own(t, session, relay, owner, "ban", addr, unban=handles) == "MALFORMED"
        assert await own(t, session, relay, owner, "ban", addr, unban=handles[:64]) == "Ok"
        if isinstance(t, WSClient):
            await t.__aexit__()


async def _last_created(
    t: WSClient | HTTPClient,
    session: aiohttp.ClientSession,
    url: str,
    owner: Owner,
    **fields: object,
) -> bytes:
    """Create a mailbox of a kind and return its rid."""
    nonce = await t.challenge("create", None)
    data = own_frame(owner, raw_cmd(op="create", nonce=nonce, key=owner.pk, **fields), 13)
    if isinstance(t, WSClient):
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        t.pending[13] = fut  # type: ignore[assignment]
        await t.send_raw(data)
        reply = await asyncio.wait_for(fut, 10)
    else:
        async with session.post(url + "v1/owner", data=data, headers={"Content-Type": CT}) as r:
            _, reply = decode_relay_frame(await r.read())
    assert type(reply).__name__ == "MailboxCreated", reply
    return reply.rid  # type: ignore[attr-defined,no-any-return]


# --- per-connection and per-process limits ----------------------------------------------------


async def test_open_websockets_per_process(
    make_relay, relay_config, session: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    """``max_connections`` WebSockets are accepted; one more is ``LIMIT`` (HTTP 429) before
    the upgrade."""
    url, _ = await make_relay(replace(relay_config, max_connections=3))
    held = [await session.ws_connect(url + "v1/ws") for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(url + "v1/ws")
    assert refused.value.status == 429
    async with session.get(
        url + "v1/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    ) as r:
        _, reply = decode_relay_frame(await r.read())
        assert r.status == 429 and isinstance(reply, ErrorReply) and reply.code == "LIMIT"
    await held[0].close()
    await asyncio.sleep(0.05)
    again = await session.ws_connect(url + "v1/ws")  # a place freed
    for ws in [again, *held[1:]]:
        await ws.close()


async def test_pending_challenges_and_subscriptions_per_connection(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    url, _ = await make_relay(replace(relay_config, max_pending_challenges=3, max_subscriptions=2))
    async with WSClient(session, url) as ws:
        rids = [(await ws.create_mailbox(owner))[0] for _ in range(3)]
        await ws.subscribe(owner, rids[0])
        await ws.subscribe(owner, rids[1])  # at the limit
        with pytest.raises(RelayRejectedError) as err:
            await ws.subscribe(owner, rids[2])
        assert err.value.code == "LIMIT"
        for _ in range(3):
            await ws.challenge("info", rids[0])  # at the limit
        with pytest.raises(RelayRejectedError) as err:
            await ws.challenge("info", rids[0])
        assert err.value.code == "LIMIT"


async def test_requests_in_flight_per_connection(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """Past ``max_inflight_requests`` a request is ``LIMIT`` and stores nothing; within it
    every one is served."""
    url, _ = await make_relay(replace(relay_config, max_inflight_requests=2))
    http = HTTPClient(session, url)
    rid, sid = await http.create_mailbox(owner)
    async with WSClient(session, url) as ws:
        for _ in range(2):  # one at a time: never above the limit
            await ws.deposit(sid, bytes(256))
        frames = [
            Deposit(id=100 + i, sid=sid, eid=os.urandom(16), flags=0, ct=bytes(256))
            for i in range(40)
        ]
        replies = await asyncio.gather(*(ws.request(f, check=False) for f in frames))
    codes = [r.code if isinstance(r, ErrorReply) else "ok" for r in replies]
    assert set(codes) <= {"ok", "LIMIT"} and "LIMIT" in codes, codes
    assert len((await http.fetch(owner, rid, max=256)).envs) == 2 + codes.count("ok")


async def test_unacknowledged_pushes_per_subscription(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """``push_window`` envelopes are pushed unacknowledged; the next waits for an ack."""
    url, _ = await make_relay(replace(relay_config, push_window=3))
    http = HTTPClient(session, url)
    rid, sid = await http.create_mailbox(owner)
    for i in range(5):
        await http.deposit(sid, bytes([i]) * 256)
    async with WSClient(session, url) as ws:
        await ws.subscribe(owner, rid)
        got = [await ws.next_push() for _ in range(3)]
        assert all(isinstance(g, EnvelopeDelivered) for g in got)
        with pytest.raises(TimeoutError):
            await ws.next_push(0.5)  # pushing paused at the window
        await ws.ack(rid, [got[0].env.seq])  # type: ignore[union-attr]
        nxt = await ws.next_push()
        assert isinstance(nxt, EnvelopeDelivered) and nxt.env.ct == bytes([3]) * 256


async def test_contact_requests_and_pow_per_connection_minute(
    make_relay, relay_config, session: aiohttp.ClientSession
) -> None:  # type: ignore[no-untyped-def]
    """The allowance counts before anything else is looked at: three ``pow?`` are answered
    (``AUTH``: no such address), the fourth on that socket is ``LIMIT``."""
    url, _ = await make_relay(replace(relay_config, requests_per_connection_minute=3))
    data = GetPow(id=7, sid=os.urandom(16)).encode()
    async with WSClient(session, url) as ws:
        for _ in range(3):
            assert await ws_answer(ws, data) == "AUTH"
        assert await ws_answer(ws, data) == "LIMIT"


# --- msgpack nesting and lengths ------------------------------------------------------------


async def test_msgpack_nesting_and_declared_lengths(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """Nesting beyond the schema and beyond 1,024 levels, and a length declaring more than
    the input holds, are ``MALFORMED``; a frame at the schema's depth is taken."""
    http = HTTPClient(session, relay)
    _, sid = await http.create_mailbox(owner)
    deep = {
        "nesting 1025": b"\x01\x81\xa1t" + b"\x91" * 1024 + b"\x00",
        "nesting 4": frame({**dep(sid, bytes(256)), "att": [[[b"x"]]]}),
        "length beyond the input": b"\x01\x81\xa1t\xc5\x00\xff" + b"x" * 20,
        "array beyond the input": b"\x01\x81\xa1t\xdc\x00\x10" + b"\x00" * 8,
    }
    async with WSClient(session, relay) as ws:
        for name, data in deep.items():
            assert await post(session, relay, "/v1/deposit", data) == (400, "MALFORMED"), name
            assert await ws_answer(ws, data) == "MALFORMED", name
        # At the schema's depth (dep -> att -> ids: level 2) a frame is stored.
        await ws.send_raw(frame({**dep(sid, bytes(256)), "att": [os.urandom(16)], "id": 77}))
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        ws.pending[77] = fut  # type: ignore[assignment]
        assert type(await asyncio.wait_for(fut, 10)).__name__ == "Ok"


# --- challenge lifetime --------------------------------------------------------------------


async def test_challenge_lifetime(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """A challenge is good ``challenge_ttl_s`` seconds after it was issued, not one more."""
    from relay.appkeys import service_key

    url, server = await make_relay(relay_config)
    clock = {"now": 1_800_000_000.0}
    server.app[service_key]._clock = lambda: clock["now"]
    async with WSClient(session, url) as ws:
        rid, _ = await ws.create_mailbox(owner)
        for wait, want in ((60, "MailboxInfo"), (61, "AUTH")):
            nonce = await ws.challenge("info", rid)
            clock["now"] += wait
            data = own_frame(owner, raw_cmd(op="info", nonce=nonce, rid=rid), request_id=11)
            assert await ws_reply(ws, data, 11) == want, wait


# --- the table itself ---------------------------------------------------------------------------

#: Each row of protocol.md §7 (its first cell up to " (" or " / ") -> the tests that take it
#: to the limit and one past it: a bare name is a test of this module, "path::name" one
#: elsewhere (checked to exist). Rows whose limit is a lifetime or a rotation are tested
#: where a clock can be moved (the store contract, the franking keyring, the forwarder).
ROWS: dict[str, tuple[str, ...]] = {
    "frame": ("test_frame_limit", "test_frame_limit_counts_a_text_message_in_bytes"),
    "envelope `ct`": ("test_envelope_ct_limit", "test_envelope_limit_below_the_maximum"),
    "owner command": ("test_owner_command_limit",),
    "prekey static part": ("test_prekey_sizes_and_items_per_upload",),
    "one-time items per `keys` command": ("test_prekey_sizes_and_items_per_upload",),
    "one-time items held per mailbox": (
        "tests/integration/test_prekeys.py::test_quota_and_hourly_allowance",
    ),
    "one-time items handed out per mailbox per hour": (
        "tests/integration/test_prekeys.py::test_quota_and_hourly_allowance",
        "tests/contract/test_store.py::test_prekeys_hourly_window",
    ),
    "msgpack nesting": ("test_msgpack_nesting_and_declared_lengths",),
    "msgpack lengths": ("test_msgpack_nesting_and_declared_lengths",),
    "HTTP body read time": (
        "tests/integration/test_slow_clients.py::test_a_trickled_body_gets_timeout",
    ),
    "HTTP request head read time": (
        "tests/integration/test_slow_clients.py::test_a_trickled_request_head_is_cut_with_408",
        "tests/integration/test_slow_clients.py::test_a_connection_that_sends_nothing_is_closed",
        "tests/integration/test_slow_clients.py::"
        "test_a_second_head_trickled_on_a_kept_alive_connection_is_cut",
    ),
    "idle HTTP keep-alive connection": (
        "tests/integration/test_slow_clients.py::"
        "test_an_idle_keepalive_connection_lives_until_keepalive_timeout",
    ),
    "WebSocket message read time, from its first byte": (
        "tests/integration/test_slow_clients.py::test_a_trickled_websocket_frame_closes_with_1008",
        "tests/integration/test_slow_clients.py::test_an_idle_websocket_that_answers_pings_stays_open",
    ),
    "open WebSocket connections per process": ("test_open_websockets_per_process",),
    "subscriptions per connection": ("test_pending_challenges_and_subscriptions_per_connection",),
    "pending challenges per connection": (
        "test_pending_challenges_and_subscriptions_per_connection",
    ),
    "requests in flight per connection": ("test_requests_in_flight_per_connection",),
    "unacknowledged pushes per subscription": ("test_unacknowledged_pushes_per_subscription",),
    "acks per frame": (
        "test_acks_per_frame_and_envelopes_per_fetch",
        "test_a_page_holds_at_most_a_mebibyte_of_ct",
    ),
    "envelopes per mailbox": (
        "tests/integration/test_relay.py::test_quota",
        "tests/contract/test_store.py::test_count_quota",
        "tests/contract/test_store.py::test_byte_quota",
    ),
    "envelope lifetime": ("tests/contract/test_store.py::test_envelope_ttl",),
    "dedupe window": (
        "tests/contract/test_store.py::test_deposit_is_idempotent_within_window",
        "tests/contract/test_store.py::test_purge_drops_expired_dedupe_records",
    ),
    "mailbox idle lifetime": ("tests/contract/test_store.py::test_mailbox_idle_expiry_and_touch",),
    "challenge lifetime": ("test_challenge_lifetime",),
    "capability hashes per `caps` command": ("test_capability_hashes_and_handles_per_command",),
    "capability hashes per pairwise mailbox": (
        "tests/integration/test_consent.py::test_capability_limit",
    ),
    "entries per `fan`": (
        "test_fan_entries_and_ciphertext",
        "tests/integration/test_fanout.py::test_a_fan_of_a_thousand",
    ),
    "ciphertext of a `fan`": ("test_fan_entries_and_ciphertext",),
    "handles per `ban` command": ("test_capability_hashes_and_handles_per_command",),
    "banned handles per contact address": ("tests/integration/test_consent.py::test_ban_limit",),
    "attachment ids per deposit": ("test_attachment_ids_per_deposit",),
    "contact requests stored per address and UTC day": (
        "tests/integration/test_consent.py::test_bans_and_daily_quota",
        "tests/contract/test_store.py::test_daily_request_quota",
    ),
    "contact requests and `pow?` per WebSocket connection and minute": (
        "test_contact_requests_and_pow_per_connection_minute",
        "tests/integration/test_consent.py::test_per_connection_limit",
    ),
    "proof-of-work nonce lifetime": (
        "tests/integration/test_consent.py::test_proof_of_work_end_to_end",
    ),
    "proof-of-work difficulty": (
        "tests/integration/test_consent.py::test_proof_of_work_end_to_end",
    ),
    "reports filed per mailbox and UTC day": (
        "tests/integration/test_reports.py::test_daily_report_allowance",
    ),
    "reported message": (
        "tests/unit/wire/test_wire_reports.py::test_report_field_rules",
        "tests/unit/wire/test_wire_reports.py::test_the_largest_report_fits_a_frame",
    ),
    "blob size": ("tests/integration/test_blob_routes.py::test_bad_input_changes_nothing",),
    "blobs": ("tests/integration/test_blob_routes.py::test_quota_per_destination_mailbox",),
    "blob lifetime": ("tests/integration/test_blob_routes.py::test_expiry_and_purge",),
    "unfinished upload": ("tests/integration/test_blob_routes.py::test_expiry_and_purge",),
    "downloads per blob": ("tests/integration/test_blob_routes.py::test_download_limit",),
    "franking key rotation": (
        "tests/unit/relay/test_franking.py::test_keyring_rotation_and_windows",
    ),
    "report window of a retired franking key": (
        "tests/integration/test_reports.py::test_expired_franking_key",
        "tests/unit/relay/test_franking.py::test_keyring_rotation_and_windows",
    ),
    "route frames per client TCP connection and minute": (
        "tests/integration/test_forwarding.py::test_limits_pow_and_switching_off",
    ),
    "forwards in progress per process": ("test_forwards_in_progress_and_one_forwards_time",),
    "packets remembered against repeats": (
        "tests/integration/test_forwarding.py::test_forwarding_and_every_refusal",
    ),
    "one forward, answer included": ("test_forwards_in_progress_and_one_forwards_time",),
    "storage wait per request": (
        "tests/faults/test_redis_faults.py::"
        "test_stalled_redis_is_unavailable_at_the_bound_and_a_retry_is_deduplicated",
        "tests/unit/relay/test_storage_bounds.py::"
        "test_a_write_or_read_past_the_bound_is_unavailable_and_the_store_carries_on",
    ),
    "route proof of work": (
        "tests/integration/test_forwarding.py::test_limits_pow_and_switching_off",
    ),
    "route key rotation": (
        "tests/integration/test_forwarding.py::test_route_keys_rotate_with_an_overlap_window",
    ),
}
#: Rows known to lack a test (none today); the meta-test fails when one gains a test and
#: stays listed.
UNTESTED: set[str] = set()


def table_rows() -> list[str]:
    text = (ROOT / "protocol.md").read_text()
    section = text.split("\n## 7. Limits\n", 1)[1].split("\n## 8.", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| resource", "|---")):
            continue
        rows.append(line.split("|")[1].strip())
    return rows


def row_key(cell: str) -> str:
    return re.split(r" \(| / ", cell, maxsplit=1)[0].strip()


def test_every_row_of_the_limits_table_has_a_test() -> None:
    """protocol.md §7 and ROWS agree: every row has tests (or is listed as untested), and
    every test named exists."""
    keys = [row_key(cell) for cell in table_rows()]
    assert len(keys) == len(set(keys)), "two rows share a key"
    assert set(keys) == set(ROWS), set(keys) ^ set(ROWS)
    here = Path(__file__).read_text()
    for key, tests in ROWS.items():
        assert bool(tests) != (key in UNTESTED), key
        for test in tests:
            path, _, name = test.rpartition("::")
            source = (ROOT / path).read_text() if path else here
            assert re.search(rf"^(async )?def {name}\(", source, re.M), test


# --- forwarding: forwards in progress, one forward's time ---------------------------------------


async def _stalling_destination(real: str, release: asyncio.Event) -> TestServer:
    """A relay front that answers ``rkeys?`` from the real relay ``real`` and holds every
    ``/v1/fwd`` until ``release`` is set (then passes it on)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def passthrough(request: web.Request) -> web.Response:
        if request.path == "/v1/fwd":
            await release.wait()
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                real + request.path, data=await request.read(), headers={"Content-Type": CT}
            ) as r,
        ):
            return web.Response(body=await r.read(), status=r.status, content_type=CT)

    app = web.Application()
    app.router.add_post("/v1/rkeys", passthrough)
    app.router.add_post("/v1/fwd", passthrough)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_forwards_in_progress_and_one_forwards_time(make_relay, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``forward_max_inflight`` forwards run at once and one more is ``LIMIT``; a forward
    whose destination does not answer within ``forward_timeout_s`` is ``UNAVAILABLE``."""
    from clientlib.client._route import seal_packet
    from clientlib.wire.client_frames import GetRouteKeys, Route
    from clientlib.wire.relay_frames import RouteKeysIssued
    from relay.config import RelayConfig

    base = RelayConfig(purge_interval_s=3600)
    d, _ = await make_relay(replace(base, data_dir=str(tmp_path / "d")))
    f, _ = await make_relay(
        replace(
            base, data_dir=str(tmp_path / "f"), forward_allow_private=True,
            forward_max_inflight=2, forward_timeout_s=1.0, forward_per_connection_minute=100,
        )
    )  # fmt: skip
    release = asyncio.Event()
    front = await _stalling_destination(d.rstrip("/"), release)
    dst = str(front.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as s:
            _, keys = decode_relay_frame(
                (await _raw_post(s, d, "/v1/rkeys", GetRouteKeys(id=1).encode()))[1]
            )
            assert isinstance(keys, RouteKeysIssued)
            entry = keys.keys[0]

            def route(i: int) -> bytes:
                pkt = seal_packet(
                    entry.kid, entry.key, GetModerationKeys(id=i).encode(), os.urandom
                )[0]
                return Route(id=i, dst=dst, pkt=pkt, pwc=None).encode()

            # Two forwards in progress (the destination holds them), the third is LIMIT.
            held = [asyncio.create_task(_raw_post(s, f, "/v1/route", route(i))) for i in (1, 2)]
            await asyncio.sleep(0.3)
            status, body = await _raw_post(s, f, "/v1/route", route(3))
            _, reply = decode_relay_frame(body)
            assert (status, reply.code) == (429, "LIMIT")  # type: ignore[union-attr]
            # The held ones end after forward_timeout_s: UNAVAILABLE (not stored, retry).
            for status, body in await asyncio.gather(*held):
                _, reply = decode_relay_frame(body)
                assert (status, reply.code) == (503, "UNAVAILABLE")  # type: ignore[union-attr]
            # Within both limits, a forward goes through.
            release.set()
            status, body = await _raw_post(s, f, "/v1/route", route(4))
            assert status == 200, decode_relay_frame(body)
    finally:
        release.set()
        await front.close()


async def _raw_post(
    session: aiohttp.ClientSession, url: str, path: str, body: bytes
) -> tuple[int, bytes]:
    async with session.post(url.rstrip("/") + path, data=body, headers={"Content-Type": CT}) as r:
        return r.status, await r.read()
