"""Every row of protocol.md §7's limits table, on a live relay: exactly at the limit is
accepted, one over gets the documented answer (on both transports where both apply).

``test_every_row_of_the_limits_table_has_a_test`` reads the table from protocol.md and fails
when a row has no entry in ``ROWS``, so a new limit cannot be added without its test.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import aiohttp
import msgpack
from relaydriver import CT, HTTPClient, Owner, WSClient

from clientlib.wire import (
    MAX_FRAME_SIZE,
    ErrorReply,
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
    from dataclasses import replace

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


# --- the table itself ---------------------------------------------------------------------------

#: Each row of protocol.md §7 (its first cell, up to the first parenthesis or " / ") and the
#: tests here that check it.
ROWS: dict[str, tuple[str, ...]] = {
    "frame": ("test_frame_limit", "test_frame_limit_counts_a_text_message_in_bytes"),
    "envelope `ct`": ("test_envelope_ct_limit", "test_envelope_limit_below_the_maximum"),
    "owner command": ("test_owner_command_limit",),
}


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
