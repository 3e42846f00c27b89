"""Prekey hosting (protocol.md §4.7) against a real in-process relay, on both backends, over
WebSocket and HTTP through clientlib.transport."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import msgpack
import pytest
import relaydriver
from aiohttp.test_utils import TestServer
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.errors import LocalProtocolError, RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential, WebSocketTransport
from clientlib.wire import (
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_PREKEY_UPLOAD,
    ErrorReply,
    FetchBundle,
    OwnerCommand,
    PreKeysStored,
    SignedOwnerCommand,
)
from relay.appkeys import service_key
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
Transport = WebSocketTransport | HTTPTransport


def blob(n: int = 64) -> bytes:
    value = os.urandom(n)
    relaydriver.remember(value)  # the relay must never log it
    return value


@contextlib.asynccontextmanager
async def transport(
    kind: str, session: aiohttp.ClientSession, url: str
) -> AsyncIterator[Transport]:
    if kind == "http":
        yield HTTPTransport(session, url)
    else:
        async with WebSocketTransport(session, url) as ws:
            yield ws


async def new_mailbox(t: Transport) -> tuple[MailboxCredential, bytes, Owner]:
    owner = Owner()
    rid, sid = await t.create_mailbox(owner.pk, owner.sign)
    relaydriver.remember(rid, sid)
    return MailboxCredential(rid, owner.sign), sid, owner


async def rejected(call: Awaitable[object]) -> str:
    with pytest.raises(RelayRejected) as info:
        await call
    return info.value.code


@pytest.mark.parametrize("kind", ["ws", "http"])
async def test_upload_status_and_fetch(
    kind: str, relay: str, session: aiohttp.ClientSession
) -> None:
    async with transport(kind, session, relay) as owner_t, transport(kind, session, relay) as t:
        cred, sid, _ = await new_mailbox(owner_t)
        assert await owner_t.put_prekeys(cred) == (0, False)  # status query
        assert await rejected(t.fetch_bundle(sid)) == "AUTH"  # no static part yet
        static, items = blob(1500), [blob() for _ in range(2 * MAX_PREKEY_UPLOAD + 6)]
        assert await owner_t.put_prekeys(cred, static=static, one_time=items) == (70, True)
        assert await owner_t.put_prekeys(cred) == (70, True)
        assert await t.fetch_bundle(sid) == (static, items[0])
        assert await t.fetch_bundle(sid) == (static, items[1])
        assert await owner_t.put_prekeys(cred) == (68, True)

        # Replace: the stored items go, the new ones are handed out first; static stays.
        fresh = [blob(), blob()]
        assert await owner_t.put_prekeys(cred, one_time=fresh, replace=True) == (2, True)
        got = [await t.fetch_bundle(sid) for _ in range(3)]
        assert got == [(static, fresh[0]), (static, fresh[1]), (static, None)]
        # A new static part, no items: the bundle degrades to the static part only.
        static2 = blob(MAX_PREKEY_STATIC_SIZE)
        assert await owner_t.put_prekeys(cred, static=static2) == (0, True)
        assert await t.fetch_bundle(sid) == (static2, None)

        assert await rejected(t.fetch_bundle(os.urandom(16))) == "AUTH"
        assert await rejected(t.fetch_bundle(cred.rid)) == "AUTH"  # a rid is no sid
        await owner_t.delete_mailbox(cred)
        assert await rejected(t.fetch_bundle(sid)) == "AUTH"
        assert await rejected(owner_t.put_prekeys(cred)) == "AUTH"


async def test_mixed_transports_and_metrics(relay: str, session: aiohttp.ClientSession) -> None:
    http = HTTPTransport(session, relay)
    async with WebSocketTransport(session, relay) as ws:
        cred, sid, _ = await new_mailbox(http)
        static, items = blob(), [blob(), blob()]
        assert await ws.put_prekeys(cred, static=static, one_time=items[:1]) == (1, True)
        assert await http.put_prekeys(cred, one_time=items[1:]) == (2, True)
        assert await http.fetch_bundle(sid) == (static, items[0])
        assert await ws.fetch_bundle(sid) == (static, items[1])
        assert await http.fetch_bundle(sid) == (static, None)
        # The WebSocket stays usable for everything else.
        await ws.subscribe(cred)
    async with session.get(relay + "metrics") as r:
        text = await r.text()
    assert "blindrelay_prekey_uploads_total 2" in text
    assert 'blindrelay_bundles_issued_total{kind="one_time"} 2' in text
    assert 'blindrelay_bundles_issued_total{kind="static_only"} 1' in text
    assert 'blindrelay_http_requests_total{kind="bundle"} 2' in text
    assert sid.hex() not in text


@pytest.mark.parametrize("kind", ["ws", "http"])
async def test_wrong_owner_key_is_auth(
    kind: str, relay: str, session: aiohttp.ClientSession
) -> None:
    async with transport(kind, session, relay) as t:
        cred, _, _ = await new_mailbox(t)
        await t.put_prekeys(cred, static=blob(), one_time=[blob()])
        wrong = MailboxCredential(cred.rid, Owner().sign)
        assert await rejected(t.put_prekeys(wrong, one_time=[blob()], replace=True)) == "AUTH"
        assert await rejected(t.put_prekeys(wrong)) == "AUTH"  # no status for strangers
        ghost = MailboxCredential(os.urandom(16), cred.sign)
        assert await rejected(t.put_prekeys(ghost, static=blob())) == "AUTH"
        assert await t.put_prekeys(cred) == (1, True)


@pytest.mark.parametrize("kind", ["ws", "http"])
async def test_quota_and_hourly_allowance(
    kind: str,
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
) -> None:
    url, server = await make_relay(
        replace(relay_config, prekey_max_items=5, prekey_fetches_per_hour=2)
    )
    clock = {"now": float(int(time.time()))}
    server.app[service_key]._clock = lambda: clock["now"]  # a window boundary cannot interfere
    async with transport(kind, session, url) as t:
        cred, sid, _ = await new_mailbox(t)
        static, items = blob(), [blob() for _ in range(6)]
        assert await rejected(t.put_prekeys(cred, static=static, one_time=items)) == "QUOTA"
        assert await t.put_prekeys(cred) == (0, False)  # nothing changed, static included
        assert await t.put_prekeys(cred, static=static, one_time=items[:5]) == (5, True)
        assert await rejected(t.put_prekeys(cred, one_time=items[5:])) == "QUOTA"
        assert await t.put_prekeys(cred) == (5, True)

        # Two one-time items per hour, then the static part only (as if none were left).
        got = [await t.fetch_bundle(sid) for _ in range(4)]
        assert got == [(static, items[0]), (static, items[1])] + [(static, None)] * 2
        assert await t.put_prekeys(cred) == (3, True)  # degraded fetches consumed nothing
        clock["now"] += 3600
        assert await t.fetch_bundle(sid) == (static, items[2])


async def test_upload_above_a_lowered_frame_limit(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, _ = await make_relay(replace(relay_config, max_frame_bytes=66_560))
    static = blob(MAX_PREKEY_STATIC_SIZE)
    full = [blob(MAX_PREKEY_ITEM_SIZE) for _ in range(MAX_PREKEY_UPLOAD)]
    http = HTTPTransport(session, url)
    cred, _, _ = await new_mailbox(http)
    assert await rejected(http.put_prekeys(cred, static=static, one_time=full)) == "TOO_LARGE"
    async with WebSocketTransport(session, url) as ws:
        with pytest.raises(LocalProtocolError):
            await ws.put_prekeys(cred, static=static, one_time=full)
        assert await ws.put_prekeys(cred, one_time=full) == (32, False)


def raw(fields: dict[str, object]) -> bytes:
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


def signed(owner: Owner, request_id: int, cmd: bytes) -> SignedOwnerCommand:
    return SignedOwnerCommand(id=request_id, cmd=cmd, sig=owner.sign(cmd))


async def test_malformed_prekey_frames_change_nothing(
    relay: str, session: aiohttp.ClientSession
) -> None:
    http_t = HTTPTransport(session, relay)
    cred, sid, owner = await new_mailbox(http_t)
    static, item = blob(), blob()
    await http_t.put_prekeys(cred, static=static, one_time=[item])
    rid = cred.rid

    def commands(nonce: bytes) -> list[tuple[str, bytes]]:
        base: dict[str, object] = {"op": "keys", "nonce": nonce, "rid": rid}
        return [
            ("static on sub", OwnerCommand(op="sub", nonce=nonce, rid=rid, static=b"s").encode()),
            ("otk on fetch", OwnerCommand(op="fetch", nonce=nonce, rid=rid, otk=(b"o",)).encode()),
            ("replace on delete", raw({"op": "delete", "nonce": nonce, "rid": rid, "replace": 1})),
            ("keys without rid", raw({"op": "keys", "nonce": nonce, "otk": [b"o"]})),
            ("keys with key", raw({**base, "key": owner.pk, "replace": 1})),
            ("keys with ack", raw({**base, "ack": [1], "replace": 1})),
            ("too many items", raw({**base, "otk": [b"o"] * (MAX_PREKEY_UPLOAD + 1)})),
            ("item too large", raw({**base, "otk": [b"o" * (MAX_PREKEY_ITEM_SIZE + 1)]})),
            ("empty item", raw({**base, "otk": [b""], "replace": 1})),
            ("static too large", raw({**base, "static": b"s" * (MAX_PREKEY_STATIC_SIZE + 1)})),
            ("replace 2", raw({**base, "replace": 2})),
            ("replace bool", raw({**base, "replace": True})),
            ("unknown field", raw({**base, "replace": 1, "x": 1})),
        ]

    async with WSClient(session, relay) as ws:
        for name, cmd in commands(await ws.challenge("keys", rid)):
            reply = await ws.request(signed(owner, next(ws.ids), cmd), check=False)
            assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", name
        for fields in (
            {"t": "bundle", "id": 9, "sid": sid[:15]},
            {"t": "bundle", "id": 9, "sid": sid, "x": 1},
            {"t": "bundle", "id": 9},
            {"t": "keys", "id": 9, "sid": sid},  # a relay frame name, not a client one
        ):
            await ws.send_raw(raw(fields))
            reply = await ws.next_push(5)
            assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", fields
        # A well-formed keys command with a challenge bound to another operation: AUTH.
        nonce = await ws.challenge("sub", rid)
        cmd = OwnerCommand(op="keys", nonce=nonce, rid=rid, replace=1).encode()
        reply = await ws.request(signed(owner, next(ws.ids), cmd), check=False)
        assert isinstance(reply, ErrorReply) and reply.code == "AUTH"
        # The socket still serves, and the status is unchanged.
        nonce = await ws.challenge("keys", rid)
        cmd = OwnerCommand(op="keys", nonce=nonce, rid=rid).encode()
        reply = await ws.request(signed(owner, next(ws.ids), cmd))
        assert reply == PreKeysStored(id=reply.id, left=1, static=1)  # type: ignore[attr-defined]

    http = HTTPClient(session, relay)
    for name, cmd in commands(await http.challenge("keys", rid)):
        status, reply = await http.post("/v1/owner", signed(owner, 1, cmd).encode())
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", name
        assert status == 400, name
    bundle = FetchBundle(id=3, sid=sid).encode()
    for path, body in (
        ("/v1/deposit", bundle),
        ("/v1/owner", bundle),
        ("/v1/challenge", bundle),
        ("/v1/bundle", raw({"t": "bundle", "id": 3, "sid": sid[:15]})),
        (
            "/v1/bundle",
            signed(owner, 1, OwnerCommand(op="keys", nonce=b"n" * 32, rid=rid).encode()).encode(),
        ),
    ):
        status, reply = await http.post(path, body)
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", path
        assert status == 400, path
    # Nothing was consumed or changed by any of it.
    assert await http_t.put_prekeys(cred) == (1, True)
    assert await http_t.fetch_bundle(sid) == (static, item)
