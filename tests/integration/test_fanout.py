"""Group fan-out and delegated revocation at the relay (protocol.md §26.1-§26.2, revision 9).

A real in-process relay on loopback, both backends, over WebSocket and HTTP through
clientlib.transport (and raw frames where the client library would refuse to send the bad
input). Every refusal is checked for its documented code and for having stored nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import nacl.signing
import pytest
import relaydriver
from aiohttp.test_utils import TestServer
from relaydriver import Owner

from clientlib.errors import RelayRejected
from clientlib.transport import (
    Delivered,
    HTTPTransport,
    MailboxCredential,
    WebSocketTransport,
)
from clientlib.wire import (
    ErrorReply,
    Fanout,
    OwnerCommand,
    capability_hash,
    delegate_hash,
    encode_map,
)
from clientlib.wire.limits import MAX_FANOUT, OWNER_COMMAND_CONTEXT
from relay.appkeys import service_key
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
Transport = WebSocketTransport | HTTPTransport
KINDS = ["ws", "http"]


@contextlib.asynccontextmanager
async def transport(
    kind: str, session: aiohttp.ClientSession, url: str
) -> AsyncIterator[Transport]:
    if kind == "http":
        yield HTTPTransport(session, url)
    else:
        async with WebSocketTransport(session, url) as ws:
            yield ws


class Member:
    """One member's group mailbox: its credential, send id and the capability others use."""

    def __init__(self, cred: MailboxCredential, sid: bytes, owner: Owner) -> None:
        self.cred, self.sid, self.owner = cred, sid, owner
        self.cap = os.urandom(32)  # what senders present here (one per sender in clientlib)
        relaydriver.remember(self.cap)


async def member(t: Transport, kind: str = "pair") -> Member:
    owner = Owner()
    rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind=kind)
    relaydriver.remember(rid, sid)
    m = Member(MailboxCredential(rid, owner.sign), sid, owner)
    if kind == "pair":
        await t.set_caps(m.cred, add=[capability_hash(sid, m.cap)])
    return m


async def stored(t: Transport, m: Member, url: str) -> list[bytes]:
    http = t if isinstance(t, HTTPTransport) else HTTPTransport(t._session, url)
    envs, _ = await http.fetch(m.cred, max=256)
    return [e.ct for e in envs]


async def counts(t: Transport, ms: list[Member]) -> list[tuple[int, int]]:
    out = []
    for m in ms:
        info = await t.mailbox_info(m.cred)
        out.append((info.envelopes, info.last_seq))
    return out


@pytest.mark.parametrize("kind", KINDS)
async def test_one_upload_reaches_every_mailbox_once(
    kind: str, relay: str, session: aiohttp.ClientSession
) -> None:
    async with transport(kind, session, relay) as t:
        ms = [await member(t) for _ in range(3)]
        ct, eid = os.urandom(512), os.urandom(16)
        n, bad = await t.fanout([(m.sid, m.cap) for m in ms], ct, eid=eid, fc=os.urandom(32))
        assert (n, bad) == (3, {})
        # A retry (same eid) stores nothing new and still counts every entry.
        assert await t.fanout([(m.sid, m.cap) for m in ms], ct, eid=eid) == (3, {})
        assert await counts(t, ms) == [(1, 1)] * 3
        assert [await stored(t, m, relay) for m in ms] == [[ct]] * 3
        # The relay's franking tag binds the copy to each recipient's mailbox (§4.11).
        http = t if isinstance(t, HTTPTransport) else HTTPTransport(session, relay)
        tags = {(await http.fetch(m.cred))[0][0].ft for m in ms}
        assert len(tags) == 3 and None not in tags


@pytest.mark.parametrize("kind", ["http"])  # the transports share this code (RelayAPI)
async def test_refused_entries_are_reported_and_change_nothing(
    kind: str, make_relay: MakeRelay, relay_config: RelayConfig, session: aiohttp.ClientSession
) -> None:
    url, server = await make_relay(replace(relay_config, mailbox_max_envelopes=1))
    async with transport(kind, session, url) as t:
        good = await member(t)
        revoked = await member(t)
        full = await member(t)
        opened = await member(t, "open")  # not a group mailbox: a capability opens nothing
        suspended = await member(t)  # an operator suspended it (§26.1: like any mailbox)
        store = server.app[service_key].store
        assert await store.set_suspended(suspended.sid, True, int(time.time()))
        await t.set_caps(revoked.cred, remove=[capability_hash(revoked.sid, revoked.cap)])
        await t.fanout([(full.sid, full.cap)], os.urandom(256), eid=os.urandom(16))
        entries = [
            (os.urandom(16), os.urandom(32)),  # unknown
            (good.sid, os.urandom(32)),  # wrong capability
            (revoked.sid, revoked.cap),
            (full.sid, full.cap),
            (opened.sid, opened.cap),
            (good.sid[::-1], good.cap),
            (suspended.sid, suspended.cap),
        ]
        before = await counts(t, [good, revoked, full, opened, suspended])
        n, bad = await t.fanout(entries, os.urandom(256), eid=os.urandom(16))
        assert n == 0
        assert bad == {0: "AUTH", 1: "AUTH", 2: "AUTH", 3: "QUOTA", 4: "AUTH", 5: "AUTH", 6: "AUTH"}
        assert await counts(t, [good, revoked, full, opened, suspended]) == before
        # The good entry among refused ones is stored.
        n, bad = await t.fanout(
            [entries[0], (good.sid, good.cap), entries[3]], os.urandom(256), eid=os.urandom(16)
        )
        assert (n, bad) == (1, {0: "AUTH", 2: "QUOTA"})
        assert (await counts(t, [good]))[0] == (1, 1)


async def raw(session: aiohttp.ClientSession, url: str, frame: bytes) -> object:
    async with session.post(
        url + "v1/fan", data=frame, headers={"Content-Type": "application/x-blindrelay"}
    ) as resp:
        from clientlib.wire import decode_relay_frame

        return resp.status, decode_relay_frame(await resp.read())[1]


async def test_bad_lists_are_refused_whole(relay: str, session: aiohttp.ClientSession) -> None:
    t = HTTPTransport(session, relay)
    ms = [await member(t) for _ in range(2)]
    before = await counts(t, ms)
    good = b"".join(m.sid + m.cap for m in ms)

    def frame(to: bytes, ct: bytes = b"\0" * 256, flags: int = 0) -> bytes:
        return Fanout(id=1, eid=os.urandom(16), flags=flags, ct=ct, to=to).encode()

    cases = {
        "duplicate": (frame(good + ms[0].sid + ms[0].cap), 400, "MALFORMED"),
        "ragged": (frame(good + b"\0" * 20), 400, "MALFORMED"),
        "over-long": (frame(good * ((MAX_FANOUT // 2) + 1)), 413, "TOO_LARGE"),
        "not a bucket": (frame(good, b"\0" * 300), 400, "MALFORMED"),
        "too large for a fan": (frame(good, b"\0" * 65536), 413, "TOO_LARGE"),
        "unknown flags": (frame(good, flags=0x80), 400, "MALFORMED"),
    }
    for name, (body, status, code) in cases.items():
        got = await raw(session, relay, body)
        assert isinstance(got[1], ErrorReply), name
        assert (got[0], got[1].code) == (status, code), name
    # An envelope field the frame does not have, and a fan with no entries.
    fields = {"t": "fan", "id": 1, "eid": os.urandom(16), "flags": 0, "ct": b"\0" * 256}
    for extra in ({"to": good, "cap": b"\0" * 32}, {"to": b""}):
        got = await raw(session, relay, encode_map({**fields, **extra}, 1))
        assert isinstance(got[1], ErrorReply) and got[1].code == "MALFORMED"
    assert await counts(t, ms) == before


async def test_a_fan_of_a_thousand(relay: str, session: aiohttp.ClientSession) -> None:
    """The documented limit works end to end: 1,000 entries, one frame, all stored."""
    t = HTTPTransport(session, relay, request_timeout=120)  # 1,000 steps on a loaded machine
    ms = [await member(t) for _ in range(4)]
    fake = [(os.urandom(16), os.urandom(32)) for _ in range(MAX_FANOUT - len(ms))]
    n, bad = await t.fanout(
        [*((m.sid, m.cap) for m in ms), *fake], os.urandom(1024), eid=os.urandom(16)
    )
    assert n == len(ms) and len(bad) == len(fake) and set(bad.values()) == {"AUTH"}
    assert await counts(t, ms) == [(1, 1)] * len(ms)


async def test_pushed_to_a_connected_owner(relay: str, session: aiohttp.ClientSession) -> None:
    async with WebSocketTransport(session, relay) as owner_side:
        m = await member(owner_side)
        await owner_side.subscribe(m.cred)
        ct = os.urandom(256)
        async with WebSocketTransport(session, relay) as sender:
            assert await sender.fanout([(m.sid, m.cap)], ct, eid=os.urandom(16)) == (1, {})
            # Online-only (typing): pushed, never stored.
            typing = os.urandom(256)
            assert await sender.fanout([(m.sid, m.cap)], typing, eid=os.urandom(16), flags=1) == (
                1,
                {},
            )
        got = []
        async with asyncio.timeout(10):
            async for event in owner_side.events():
                if isinstance(event, Delivered):
                    got.append(event.env.ct)
                    if event.env.seq:
                        await owner_side.ack(m.cred.rid, [event.env.seq])
                    if len(got) == 2:
                        break
        assert got == [ct, typing]
        assert (await owner_side.mailbox_info(m.cred)).envelopes == 0


@pytest.mark.parametrize("kind", ["ws"])  # the transports share this code (RelayAPI)
async def test_a_delegate_revokes_a_removed_members_capability(
    kind: str, relay: str, session: aiohttp.ClientSession
) -> None:
    async with transport(kind, session, relay) as t:
        m = await member(t)
        admin = nacl.signing.SigningKey.generate()
        admin_pk = bytes(admin.verify_key)
        stranger = nacl.signing.SigningKey.generate()
        relaydriver.remember(admin_pk, bytes(stranger.verify_key))

        def signer(key: nacl.signing.SigningKey) -> Callable[[bytes], bytes]:
            return lambda cmd: key.sign(OWNER_COMMAND_CONTEXT + cmd).signature

        removed_cap = os.urandom(32)
        h = capability_hash(m.sid, removed_cap)
        await t.set_caps(m.cred, add=[h, delegate_hash(m.sid, admin_pk)])
        assert await t.fanout([(m.sid, removed_cap)], os.urandom(256), eid=os.urandom(16)) == (
            1,
            {},
        )
        # Not a delegate; a delegate signature under another key; an unknown send id.
        with pytest.raises(RelayRejected) as info:
            await t.delegated_caps(m.sid, bytes(stranger.verify_key), signer(stranger), remove=[h])
        assert info.value.code == "AUTH"
        with pytest.raises(RelayRejected) as info:
            await t.delegated_caps(m.sid, admin_pk, signer(stranger), remove=[h])
        assert info.value.code == "AUTH"
        with pytest.raises(RelayRejected) as info:
            await t.delegated_caps(os.urandom(16), admin_pk, signer(admin), remove=[h])
        assert info.value.code == "AUTH"
        assert (await t.mailbox_info(m.cred)).caps == 3
        # The delegate revokes: the removed member's deposits are refused, others pass.
        await t.delegated_caps(m.sid, admin_pk, signer(admin), remove=[h])
        assert (await t.mailbox_info(m.cred)).caps == 2
        _, bad = await t.fanout([(m.sid, removed_cap)], os.urandom(256), eid=os.urandom(16))
        assert bad == {0: "AUTH"}
        with pytest.raises(RelayRejected):
            await t.deposit(m.sid, os.urandom(256), eid=os.urandom(16), cap=removed_cap)
        assert await t.fanout([(m.sid, m.cap)], os.urandom(256), eid=os.urandom(16)) == (1, {})
        # The next epoch's capability, added by the delegate in the same command.
        new_cap = os.urandom(32)
        await t.delegated_caps(
            m.sid, admin_pk, signer(admin), remove=[h], add=[capability_hash(m.sid, new_cap)]
        )
        assert await t.fanout([(m.sid, new_cap)], os.urandom(256), eid=os.urandom(16)) == (1, {})


async def test_dcaps_needs_sid_and_key(relay: str, session: aiohttp.ClientSession) -> None:
    """The owner-command shape rules hold for dcaps (MALFORMED before any work)."""
    t = HTTPTransport(session, relay)
    m = await member(t)
    admin = Owner()
    await t.set_caps(m.cred, add=[delegate_hash(m.sid, admin.pk)])
    for fields in (
        {"key": admin.pk, "remove": (bytes(32),)},  # no sid
        {"sid": m.sid, "add": (bytes(32),)},  # no key
        {"sid": m.sid, "key": admin.pk, "remove": (bytes(32),), "rid": m.cred.rid},  # extra rid
    ):
        nonce = await relaydriver.HTTPClient(session, relay).challenge("dcaps", m.sid)
        cmd = OwnerCommand(op="dcaps", nonce=nonce, **fields).encode()  # type: ignore[arg-type]
        _, reply = await post_owner(session, relay, cmd, admin.sign(cmd))
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED", fields
    assert (await t.mailbox_info(m.cred)).caps == 2


async def post_owner(
    session: aiohttp.ClientSession, url: str, cmd: bytes, sig: bytes
) -> tuple[int, object]:
    from clientlib.wire import SignedOwnerCommand, decode_relay_frame

    body = SignedOwnerCommand(id=1, cmd=cmd, sig=sig).encode()
    async with session.post(
        url + "v1/owner", data=body, headers={"Content-Type": "application/x-blindrelay"}
    ) as resp:
        return resp.status, decode_relay_frame(await resp.read())[1]
