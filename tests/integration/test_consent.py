"""Consent enforced by the relay (protocol.md §4.8-§4.10): pairwise mailboxes with send
capabilities, contact addresses with boundaries, proof of work, handles and bans, mailbox info.

A real in-process relay on loopback, both backends, over WebSocket and HTTP through
clientlib.transport. Every refusal is checked for its documented code and for having stored
nothing (through ``info`` and fetch).
"""

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

from clientlib.errors import RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential, WebSocketTransport
from clientlib.wire import (
    DEFAULT_BOUNDARIES,
    Boundaries,
    BundleIssued,
    Deposit,
    ErrorReply,
    FetchBundle,
    GetBoundaries,
    GetPow,
    MailboxInfo,
    capability_hash,
    leading_zero_bits,
    pow_digest,
    solve,
)
from relay.appkeys import service_key
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
Transport = WebSocketTransport | HTTPTransport
KINDS = ["ws", "http"]
BND = Boundaries(size=4096, att=0, day=3, pow=0)


def secret(n: int) -> bytes:
    value = os.urandom(n)
    relaydriver.remember(value)  # the relay must never log it
    return value


def ct(size: int = 256) -> bytes:
    return os.urandom(size)


@contextlib.asynccontextmanager
async def transport(
    kind: str, session: aiohttp.ClientSession, url: str
) -> AsyncIterator[Transport]:
    if kind == "http":
        yield HTTPTransport(session, url)
    else:
        async with WebSocketTransport(session, url) as ws:
            yield ws


async def new_mailbox(
    t: Transport, kind: str = "open", bnd: Boundaries | None = None
) -> tuple[MailboxCredential, bytes]:
    owner = Owner()
    rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind=kind, boundaries=bnd)
    relaydriver.remember(rid, sid)
    return MailboxCredential(rid, owner.sign), sid


async def rejected(call: Awaitable[object]) -> str:
    with pytest.raises(RelayRejected) as info:
        await call
    return info.value.code


def counts(info: MailboxInfo) -> tuple[int, int, int, int, int]:
    """What a refused deposit must not change."""
    return info.envelopes, info.last_seq, info.dedupe_records, info.requests, info.stored_bytes


async def stored_cts(t: Transport, cred: MailboxCredential, kind: str, url: str) -> list[bytes]:
    """Every stored envelope's ciphertext, through an HTTP fetch (a peek)."""
    http = t if isinstance(t, HTTPTransport) else HTTPTransport(t._session, url)
    envs, _ = await http.fetch(cred, max=256)
    return [e.ct for e in envs]


# --- pairwise mailboxes and send capabilities ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_capabilities(kind: str, relay: str, session: aiohttp.ClientSession) -> None:
    async with transport(kind, session, relay) as t:
        cred, sid = await new_mailbox(t, "pair")
        other, other_sid = await new_mailbox(t, "pair")
        cap, cap2 = secret(32), secret(32)
        await t.set_caps(cred, add=[capability_hash(sid, cap), capability_hash(sid, cap2)])
        await t.set_caps(other, add=[capability_hash(other_sid, cap)])  # same bytes, elsewhere

        first = ct()
        await t.deposit(sid, first, eid=os.urandom(16), cap=cap)
        await t.deposit(sid, ct(), eid=os.urandom(16), cap=cap2)
        before = await t.mailbox_info(cred)
        assert (before.kind, before.caps, before.envelopes) == ("pair", 2, 2)

        unknown = await rejected(t.deposit(os.urandom(16), ct(), eid=os.urandom(16), cap=cap))
        assert unknown == "AUTH"
        refusals = {
            "missing": await rejected(t.deposit(sid, ct(), eid=os.urandom(16))),
            "forged": await rejected(t.deposit(sid, ct(), eid=os.urandom(16), cap=secret(32))),
            # The bytes registered on another mailbox hash differently here.
            "cross-mailbox": await rejected(
                t.deposit(sid, ct(), eid=os.urandom(16), cap=capability_hash(other_sid, cap))
            ),
            "a rid as sid": await rejected(t.deposit(cred.rid, ct(), eid=os.urandom(16), cap=cap)),
            "online-only": await rejected(t.deposit(sid, ct(), eid=os.urandom(16), flags=1)),
        }
        assert set(refusals.values()) == {unknown}, refusals
        await t.deposit(sid, ct(), eid=os.urandom(16), flags=1, cap=cap)  # pushed, not stored
        await t.deposit(other_sid, ct(), eid=os.urandom(16), cap=cap)  # its own mailbox

        # Revocation is blocking, exactly like a mailbox that does not exist.
        await t.set_caps(cred, remove=[capability_hash(sid, cap)])
        eid = os.urandom(16)
        assert await rejected(t.deposit(sid, ct(), eid=eid, cap=cap)) == unknown
        assert await rejected(t.deposit(sid, ct(), eid=eid, cap=cap, flags=1)) == unknown
        await t.deposit(sid, ct(), eid=os.urandom(16), cap=cap2)  # other contacts unaffected
        after = await t.mailbox_info(cred)
        assert counts(after) == (3, 3, 3, 0, 3 * 256)
        assert after.caps == 1
        # Unblocking restores the contact (same eid: it was never stored).
        await t.set_caps(cred, add=[capability_hash(sid, cap)])
        await t.deposit(sid, ct(), eid=eid, cap=cap)
        assert (await t.mailbox_info(cred)).envelopes == 4
        assert (await stored_cts(t, cred, kind, relay))[0] == first

        # Capability commands belong to pairwise mailboxes; limits are enforced.
        addr, _ = await new_mailbox(t, "addr")
        opened, _ = await new_mailbox(t)
        for c in (addr, opened):
            assert await rejected(t.set_caps(c, add=[os.urandom(32)])) == "MALFORMED"
        ghost = MailboxCredential(os.urandom(16), cred.sign)
        assert await rejected(t.set_caps(ghost, add=[os.urandom(32)])) == "AUTH"
        wrong_key = MailboxCredential(cred.rid, Owner().sign)
        assert await rejected(t.set_caps(wrong_key, remove=[os.urandom(32)])) == "AUTH"


async def test_capability_limit(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, _ = await make_relay(replace(relay_config, max_caps=3))
    async with WebSocketTransport(session, url) as t:
        cred, sid = await new_mailbox(t, "pair")
        caps = [secret(32) for _ in range(4)]
        hashes = [capability_hash(sid, c) for c in caps]
        await t.set_caps(cred, add=hashes[:3])
        assert await rejected(t.set_caps(cred, add=hashes[3:])) == "QUOTA"
        assert await rejected(t.set_caps(cred, add=hashes[3:], remove=[os.urandom(32)])) == (
            "QUOTA"
        )
        assert (await t.mailbox_info(cred)).caps == 3
        await t.set_caps(cred, add=hashes[3:], remove=hashes[:1])  # swap: removal first
        assert await rejected(t.deposit(sid, ct(), eid=os.urandom(16), cap=caps[0])) == "AUTH"
        await t.deposit(sid, ct(), eid=os.urandom(16), cap=caps[3])


# --- contact addresses --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_address_boundaries(kind: str, relay: str, session: aiohttp.ClientSession) -> None:
    async with transport(kind, session, relay) as t:
        cred, sid = await new_mailbox(t, "addr", BND)
        assert await t.boundaries(sid) == BND
        dflt, dflt_sid = await new_mailbox(t, "addr")
        assert await t.boundaries(dflt_sid) == DEFAULT_BOUNDARIES
        for other_kind in ("open", "pair"):
            _, other_sid = await new_mailbox(t, other_kind)
            assert await rejected(t.boundaries(other_sid)) == "AUTH"
            assert await rejected(t.pow_challenge(other_sid)) == "AUTH"
        assert await rejected(t.boundaries(os.urandom(16))) == "AUTH"
        assert await rejected(t.boundaries(cred.rid)) == "AUTH"

        alice = secret(16)
        accepted = ct(4096)
        await t.deposit(sid, accepted, eid=os.urandom(16), hdl=alice)
        before = await t.mailbox_info(cred)
        assert (before.requests, before.requests_today, before.envelopes) == (1, 1, 1)
        refusals = [
            ("no handle", "MALFORMED", t.deposit(sid, ct(2048), eid=os.urandom(16))),
            ("too large", "BOUNDARY", t.deposit(sid, ct(8192), eid=os.urandom(16), hdl=alice)),
            (
                "attachments",
                "BOUNDARY",
                t.deposit(sid, ct(), eid=os.urandom(16), hdl=alice, att=[os.urandom(16)]),
            ),
            (
                "online-only",
                "MALFORMED",
                t.deposit(sid, ct(), eid=os.urandom(16), hdl=alice, flags=1),
            ),
            ("unknown", "AUTH", t.deposit(os.urandom(16), ct(), eid=os.urandom(16), hdl=alice)),
        ]
        for name, code, call in refusals:
            assert await rejected(call) == code, name
        assert counts(await t.mailbox_info(cred)) == counts(before)

        # The envelope carries the requester's handle to the owner.
        http = t if isinstance(t, HTTPTransport) else HTTPTransport(session, relay)
        envs, _ = await http.fetch(cred)
        assert [(e.ct, e.hdl) for e in envs] == [(accepted, alice)]

        # Boundaries can change; a new size applies at once.
        await t.set_boundaries(cred, Boundaries(size=8192, att=1, day=3, pow=0))
        await t.deposit(sid, ct(8192), eid=os.urandom(16), hdl=alice, att=[os.urandom(16)])
        await t.set_boundaries(dflt, BND)
        assert await t.boundaries(dflt_sid) == BND
        pair, _ = await new_mailbox(t, "pair")
        assert await rejected(t.set_boundaries(pair, BND)) == "MALFORMED"
        assert await rejected(t.ban(pair, add=[alice])) == "MALFORMED"


@pytest.mark.parametrize("kind", KINDS)
async def test_bans_and_daily_quota(
    kind: str,
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
) -> None:
    url, server = await make_relay(relay_config)
    # Tomorrow, 01:00 UTC: in the future, so the relay's startup purge (which runs on the
    # real clock) cannot take this test's challenges for expired ones.
    clock = {"now": float((int(time.time()) // 86_400 + 1) * 86_400 + 3600)}
    server.app[service_key]._clock = lambda: clock["now"]
    async with transport(kind, session, url) as t:
        cred, sid = await new_mailbox(t, "addr", BND)  # 3 requests a day
        spammer, friend = secret(16), secret(16)
        await t.ban(cred, add=[spammer])
        unknown = await rejected(t.deposit(os.urandom(16), ct(), eid=os.urandom(16), hdl=spammer))
        assert await rejected(t.deposit(sid, ct(), eid=os.urandom(16), hdl=spammer)) == unknown
        eids = [os.urandom(16) for _ in range(3)]
        for eid in eids:
            await t.deposit(sid, ct(), eid=eid, hdl=friend)
        assert await rejected(t.deposit(sid, ct(), eid=os.urandom(16), hdl=friend)) == "QUOTA"
        await t.deposit(sid, ct(), eid=eids[0], hdl=friend)  # a retry: a duplicate, ok
        info = await t.mailbox_info(cred)
        assert (info.bans, info.requests, info.requests_today, info.envelopes) == (1, 3, 3, 3)
        assert info.requests_day == int(clock["now"]) // 86_400
        # The next UTC day has a new allowance; unbanning lets the handle in again.
        clock["now"] += 86_400
        await t.ban(cred, remove=[spammer], add=[friend])
        await t.deposit(sid, ct(), eid=os.urandom(16), hdl=spammer)
        assert await rejected(t.deposit(sid, ct(), eid=os.urandom(16), hdl=friend)) == unknown
        info = await t.mailbox_info(cred)
        assert (info.bans, info.requests, info.requests_today, info.envelopes) == (1, 1, 1, 4)
        clock["now"] += 86_400
        info = await t.mailbox_info(cred)
        assert (info.requests, info.requests_today) == (1, 0)  # the stored day is older


async def test_ban_limit(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, _ = await make_relay(replace(relay_config, max_bans=2))
    http = HTTPTransport(session, url)
    cred, _ = await new_mailbox(http, "addr")
    await http.ban(cred, add=[os.urandom(16), os.urandom(16)])
    assert await rejected(http.ban(cred, add=[os.urandom(16)])) == "QUOTA"
    assert (await http.mailbox_info(cred)).bans == 2


# --- proof of work ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_proof_of_work_end_to_end(
    kind: str,
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
) -> None:
    url, server = await make_relay(replace(relay_config, pow_ttl_s=60))
    clock = {"now": float(int(time.time()))}
    server.app[service_key]._clock = lambda: clock["now"]
    bits = 8
    async with transport(kind, session, url) as t:
        cred, sid = await new_mailbox(t, "addr", replace(BND, day=100, pow=bits))
        _, other_sid = await new_mailbox(t, "addr", replace(BND, day=100, pow=bits))
        hdl = secret(16)

        async def solved(address: bytes, eid: bytes) -> tuple[bytes, int]:
            chal = await t.pow_challenge(address)
            assert chal.bits == bits and chal.exp == int(clock["now"]) + 60
            return chal.nonce, solve(address, chal.nonce, eid, chal.bits)

        eid = os.urandom(16)
        proof = await solved(sid, eid)
        before = await t.mailbox_info(cred)
        assert await rejected(t.deposit(sid, ct(), eid=eid, hdl=hdl)) == "POW"
        await t.deposit(sid, ct(), eid=eid, hdl=hdl, pow=proof)

        # A nonce is single use: reusing it (solved anew for another eid) fails.
        eid2 = os.urandom(16)
        reused = (proof[0], solve(sid, proof[0], eid2, bits))
        assert await rejected(t.deposit(sid, ct(), eid=eid2, hdl=hdl, pow=reused)) == "POW"
        # A nonce issued for another address, a forged nonce, too little work, work for
        # another eid: all POW.
        foreign = await solved(other_sid, eid2)
        nonce, _ = await solved(sid, eid2)
        weak = next(
            c for c in range(10_000) if leading_zero_bits(pow_digest(sid, nonce, eid2, c)) < bits
        )
        for name, proof2 in (
            ("foreign", (foreign[0], solve(sid, foreign[0], eid2, bits))),
            ("forged", (os.urandom(16), 0)),
            ("weak", (nonce, weak)),
            ("other eid", (nonce, solve(sid, nonce, os.urandom(16), bits))),
        ):
            if leading_zero_bits(pow_digest(sid, proof2[0], eid2, proof2[1])) >= bits:
                continue  # that counter happens to work for eid2 too (p = 1/256)
            code = await rejected(t.deposit(sid, ct(), eid=eid2, hdl=hdl, pow=proof2))
            assert code == "POW", name
        # The nonce survived the too-weak attempt (work is checked before the nonce is used).
        await t.deposit(sid, ct(), eid=eid2, hdl=hdl, pow=(nonce, solve(sid, nonce, eid2, bits)))
        # An expired nonce fails.
        eid3 = os.urandom(16)
        late = await solved(sid, eid3)
        clock["now"] += 61
        assert await rejected(t.deposit(sid, ct(), eid=eid3, hdl=hdl, pow=late)) == "POW"
        # A retry of a stored request needs a fresh nonce but keeps its eid: a duplicate.
        await t.deposit(sid, ct(), eid=eid, hdl=hdl, pow=await solved(sid, eid))
        after = await t.mailbox_info(cred)
        assert counts(after)[:4] == (before.envelopes + 2, 2, 2, 2)
        # Lowering the difficulty to 0 needs no work.
        await t.set_boundaries(cred, replace(BND, day=100, pow=0))
        assert (await t.pow_challenge(sid)).bits == 0
        await t.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)


async def test_per_connection_limit(
    make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, server = await make_relay(replace(relay_config, requests_per_connection_minute=4))
    clock = {"now": float(int(time.time()) // 60 * 60)}
    server.app[service_key]._clock = lambda: clock["now"]
    http = HTTPTransport(session, url)
    cred, sid = await new_mailbox(http, "addr", replace(BND, day=100))
    hdl = secret(16)
    async with WebSocketTransport(session, url) as ws, WebSocketTransport(session, url) as ws2:
        await ws.pow_challenge(sid)
        await ws.pow_challenge(sid)
        await ws.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)
        await ws.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)
        before = await http.mailbox_info(cred)
        assert await rejected(ws.pow_challenge(sid)) == "LIMIT"
        assert await rejected(ws.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)) == "LIMIT"
        assert counts(await http.mailbox_info(cred)) == counts(before)
        # Other requests on that socket, and other sockets, are not limited.
        _, open_sid = await new_mailbox(ws)
        await ws.deposit(open_sid, ct(), eid=os.urandom(16))
        await ws.boundaries(sid)
        await ws2.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)
        # HTTP is not per connection (operators limit it in the proxy).
        for _ in range(6):
            await http.pow_challenge(sid)
        # The next minute has a new allowance.
        clock["now"] += 60
        await ws.deposit(sid, ct(), eid=os.urandom(16), hdl=hdl)


# --- mailbox info -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_mailbox_info(kind: str, relay: str, session: aiohttp.ClientSession) -> None:
    async with transport(kind, session, relay) as t:
        owner = Owner()
        rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind="addr", boundaries=BND)
        relaydriver.remember(rid, sid)
        cred = MailboxCredential(rid, owner.sign)
        today, hour = int(time.time()) // 86_400, int(time.time()) // 3600
        info = await t.mailbox_info(cred)
        assert info == MailboxInfo(
            id=info.id,
            kind="addr",
            sid=sid,
            owner_key=owner.pk,
            created_day=today,
            active_day=today,
            last_seq=0,
            envelopes=0,
            stored_bytes=0,
            oldest_ts=None,
            dedupe_records=0,
            prekeys_left=0,
            prekey_static=0,
            prekey_hour=None,
            prekeys_handed=0,
            caps=0,
            bnd=BND,
            bans=0,
            requests_day=None,
            requests=0,
            requests_today=0,
        )
        await t.deposit(sid, ct(2048), eid=os.urandom(16), hdl=os.urandom(16))
        await t.put_prekeys(cred, static=secret(32), one_time=[secret(32), secret(32)])
        await t.fetch_bundle(sid)
        await t.ban(cred, add=[os.urandom(16)])
        info = await t.mailbox_info(cred)
        assert (info.envelopes, info.stored_bytes, info.last_seq, info.dedupe_records) == (
            1,
            2048,
            1,
            1,
        )
        assert info.oldest_ts is not None and info.oldest_ts % 86_400 == 0  # day-coarse
        assert (info.prekeys_left, info.prekey_static, info.prekeys_handed, info.bans) == (
            1,
            1,
            1,
            1,
        )
        assert info.prekey_hour in (hour, int(time.time()) // 3600)
        assert (info.requests, info.requests_today) == (1, 1)
        # Only the owner may ask; after delete the mailbox is unknown (AUTH).
        assert await rejected(t.mailbox_info(MailboxCredential(rid, Owner().sign))) == "AUTH"
        await t.delete_mailbox(cred)
        assert await rejected(t.mailbox_info(cred)) == "AUTH"
        assert await rejected(t.boundaries(sid)) == "AUTH"
        assert await rejected(t.pow_challenge(sid)) == "AUTH"


# --- raw frames: HTTP statuses and malformed input -----------------------------------------


def raw(fields: dict[str, object]) -> bytes:
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


async def test_raw_frames_and_statuses(relay: str, session: aiohttp.ClientSession) -> None:
    http_t = HTTPTransport(session, relay)
    cred, sid = await new_mailbox(http_t, "addr", replace(BND, pow=8))
    http = HTTPClient(session, relay)
    status, reply = await http.post("/v1/boundaries", GetBoundaries(id=1, sid=sid).encode())
    assert status == 200 and getattr(reply, "bnd", None) == replace(BND, pow=8)
    status, reply = await http.post("/v1/pow", GetPow(id=2, sid=sid).encode())
    assert status == 200 and getattr(reply, "bits", None) == 8
    dep = Deposit(id=3, sid=sid, eid=os.urandom(16), flags=0, ct=ct(8192), hdl=os.urandom(16))
    status, reply = await http.post("/v1/deposit", dep.encode())
    assert (status, reply) == (403, ErrorReply(code="BOUNDARY", id=3))  # id echoed (rev. 13)
    dep = replace(dep, ct=ct(2048))
    status, reply = await http.post("/v1/deposit", dep.encode())
    assert (status, reply) == (403, ErrorReply(code="POW", id=3))
    status, reply = await http.post("/v1/deposit", replace(dep, pow=os.urandom(16)).encode())
    assert (status, reply) == (400, ErrorReply(code="MALFORMED", id=3))  # pow without pwc
    await http_t.put_prekeys(cred, static=secret(64))
    status, reply = await http.post("/v1/bundle", FetchBundle(id=6, sid=sid).encode())
    assert status == 200 and reply == BundleIssued(
        id=6,
        static=reply.static,
        bnd=replace(BND, pow=8),  # type: ignore[attr-defined]
    )
    status, reply = await http.post("/v1/pow", GetBoundaries(id=4, sid=sid).encode())
    assert (status, reply) == (400, ErrorReply(code="MALFORMED", id=4))
    status, reply = await http.post("/v1/boundaries", raw({"t": "bnd?", "id": 5}))
    assert (status, reply) == (400, ErrorReply(code="MALFORMED", id=5))
    async with WSClient(session, relay) as ws:
        for fields in (
            {"t": "pow?", "id": 9, "sid": sid[:15]},
            {"t": "bnd?", "id": 9, "sid": sid, "x": 1},
            {"t": "bnd", "id": 9, "bnd": BND.to_map()},  # a relay frame name
            {
                "t": "dep",
                "id": 9,
                "sid": sid,
                "eid": b"e" * 16,
                "flags": 0,
                "ct": b"c" * 256,
                "att": [b"a" * 16] * 17,
            },
        ):
            await ws.send_raw(raw(fields))
            reply = await ws.next_push(5)
            assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", fields
        # Deposit with pow and no pwc: MALFORMED with its id; the socket still serves.
        reply = await ws.request(
            Deposit(
                id=10, sid=sid, eid=b"e" * 16, flags=0, ct=ct(2048), hdl=b"h" * 16, pow=b"p" * 16
            ),
            check=False,
        )
        assert reply == ErrorReply(code="MALFORMED", id=10)
        reply = await ws.request(GetBoundaries(id=11, sid=sid))
        assert getattr(reply, "bnd", None) == replace(BND, pow=8)
    assert (await http_t.mailbox_info(cred)).envelopes == 0
