"""clientlib.transport against a real in-process relay, on both backends.

Tests that only need a link reach the relay through an in-memory link (``memrelay``); the
reconnect tests drop sockets and stop the server, so they use a loopback TestServer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import memrelay
import nacl.signing
import pytest
import relaydriver
from aiohttp.test_utils import TestServer

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError
from clientlib.transport import (
    CaughtUp,
    Delivered,
    Disconnected,
    HTTPTransport,
    MailboxCredential,
    Reconnected,
    TransportEvent,
    WebSocketTransport,
    spread,
)
from clientlib.transport.api import RelayAPI
from clientlib.transport.memory import MemoryLink
from clientlib.wire import DEFAULT_BOUNDARIES, OWNER_COMMAND_CONTEXT, REPORT_REASONS, VersionRange
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]

TIMEOUT = 5.0


class Key:
    """An owner key pair; the transport only ever sees ``sign``."""

    def __init__(self) -> None:
        self.sk = nacl.signing.SigningKey.generate()
        self.pk = bytes(self.sk.verify_key)

    def sign(self, cmd: bytes) -> bytes:
        return self.sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature


def ct(n: int = 256) -> bytes:
    return os.urandom(n)


def eid() -> bytes:
    return os.urandom(16)


async def new_mailbox(
    t: WebSocketTransport | HTTPTransport,
) -> tuple[MailboxCredential, bytes, Key]:
    key = Key()
    rid, sid = await t.create_mailbox(key.pk, key.sign)
    relaydriver.remember(rid, sid, key.pk)
    return MailboxCredential(rid, key.sign), sid, key


class Events:
    """Reads a transport's events with a timeout per event."""

    def __init__(self, t: WebSocketTransport) -> None:
        self.it: AsyncIterator[TransportEvent] = t.events()

    async def next(self) -> TransportEvent:
        return await asyncio.wait_for(anext(self.it), TIMEOUT)

    async def until_caught_up(self, rid: bytes) -> list[Delivered]:
        got: list[Delivered] = []
        while True:
            ev = await self.next()
            if isinstance(ev, CaughtUp):
                assert ev.rid == rid
                return got
            assert isinstance(ev, Delivered), ev
            got.append(ev)

    async def delivered(self, n: int) -> list[Delivered]:
        got: list[Delivered] = []
        for _ in range(n):
            ev = await self.next()
            assert isinstance(ev, Delivered), ev
            got.append(ev)
        return got


def instant() -> float:
    return 0.0


@pytest.fixture
async def link(relay_config: RelayConfig) -> AsyncIterator[MemoryLink]:
    """The relay of ``relay_config`` (both backends) behind an in-memory link."""
    async with memrelay.memory_relay(relay_config) as running:
        yield running


async def test_websocket_create_subscribe_deposit_ack(link: MemoryLink) -> None:
    relay, session = link.url, link.default_session
    async with (
        WebSocketTransport(session, relay) as owner,
        WebSocketTransport(session, relay) as sender,
    ):
        assert owner.version == 1
        assert owner.limits is not None and owner.limits.push_window >= 1
        cred, sid, _ = await new_mailbox(owner)
        early = [ct(), ct(512)]
        for body in early:
            await sender.deposit(sid, body, eid=eid())
        events = Events(owner)
        await owner.subscribe(cred)
        got = await events.until_caught_up(cred.rid)
        assert [d.env.ct for d in got] == early
        assert [d.env.seq for d in got] == [1, 2]
        assert all(d.rid == cred.rid for d in got)

        fc = os.urandom(32)
        late_eid = eid()
        await sender.deposit(sid, early[0], eid=late_eid, fc=fc)
        await sender.deposit(sid, early[0], eid=late_eid, fc=fc)  # a retry: deduplicated
        (late,) = await events.delivered(1)
        assert (late.env.seq, late.env.eid, late.env.fc) == (3, late_eid, fc)

        await owner.ack(cred.rid, [d.env.seq for d in [*got, late]])
        http = HTTPTransport(session, relay)
        envs, more = await http.fetch(cred)
        assert envs == () and not more

        await owner.unsubscribe(cred.rid)
        await owner.delete_mailbox(cred)
        with pytest.raises(RelayRejected) as err:
            await sender.deposit(sid, ct(), eid=eid())
        assert err.value.code == "AUTH"


async def test_http_fetch_ack_delete(link: MemoryLink) -> None:
    relay, session = link.url, link.default_session
    http = HTTPTransport(session, relay, request_timeout=TIMEOUT)
    cred, sid, _ = await new_mailbox(http)
    bodies = [ct() for _ in range(5)]
    eids = [eid() for _ in bodies]
    for body, e in zip(bodies, eids, strict=True):
        await http.deposit(sid, body, eid=e)
    await http.deposit(sid, bodies[0], eid=eids[0])  # idempotent retry

    envs, more = await http.fetch(cred, max=3)
    assert more
    assert [e.eid for e in envs] == eids[:3]
    envs, more = await http.fetch(cred, ack=[e.seq for e in envs], max=64)
    assert not more
    assert [e.ct for e in envs] == bodies[3:]
    envs, more = await http.fetch(cred, ack=[e.seq for e in envs], max=0)
    assert envs == () and not more

    await http.delete_mailbox(cred)
    with pytest.raises(RelayRejected) as err:
        await http.fetch(cred)
    assert err.value.code == "AUTH"


async def test_relay_rejections(link: MemoryLink) -> None:
    relay, session = link.url, link.default_session
    http = HTTPTransport(session, relay)
    async with WebSocketTransport(session, relay) as t:
        for transport in (t, http):
            with pytest.raises(RelayRejected) as err:
                await transport.deposit(os.urandom(16), ct(), eid=eid())
            assert err.value.code == "AUTH"
        cred, sid, _ = await new_mailbox(t)
        for transport in (t, http):
            with pytest.raises(RelayRejected) as err:
                await transport.deposit(sid, ct(300), eid=eid())  # not a bucket size
            assert err.value.code == "MALFORMED"
        wrong = MailboxCredential(cred.rid, Key().sign)
        with pytest.raises(RelayRejected) as err:
            await t.subscribe(wrong)
        assert err.value.code == "AUTH"
        with pytest.raises(RelayRejected) as err:
            await http.fetch(wrong)
        assert err.value.code == "AUTH"
        with pytest.raises(RelayRejected) as err:
            await t.ack(cred.rid, [1])  # not subscribed on this connection
        assert err.value.code == "AUTH"
        # The connection is still usable after rejections.
        await t.subscribe(cred)
        await t.delete_mailbox(cred)


async def test_reconnect_redelivers_unacked(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
) -> None:
    url, _ = await make_relay(relay_config)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    sender = HTTPTransport(session, url)
    async with WebSocketTransport(session, url, rng=instant, sleep=sleep) as t:
        events = Events(t)
        cred, sid, _ = await new_mailbox(t)
        await t.subscribe(cred)
        assert await events.until_caught_up(cred.rid) == []
        first = [eid() for _ in range(3)]
        for e in first:
            await sender.deposit(sid, ct(), eid=e)
        got = await events.delivered(3)
        assert [d.env.eid for d in got] == first
        await t.ack(cred.rid, [got[0].env.seq])

        assert t._conn is not None
        await t._conn.ws.close()  # the socket drops
        assert isinstance(await events.next(), Disconnected)
        # A deposit while reconnecting waits for the new socket.
        late = eid()
        pending = asyncio.ensure_future(t.deposit(sid, ct(), eid=late))
        assert isinstance(await events.next(), Reconnected)
        await asyncio.wait_for(pending, TIMEOUT)
        assert delays == [0.0]
        assert t.connected

        seen: list[bytes] = []
        while len(seen) < 3:
            ev = await events.next()
            if isinstance(ev, Delivered):
                seen.append(ev.env.eid)
            else:
                assert isinstance(ev, CaughtUp)
        # Unacked envelopes come back (catch-up) and the new one arrives: none lost.
        assert seen == [*first[1:], late]
        await t.delete_mailbox(cred)


async def test_reconnect_gives_up_when_relay_is_gone(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
) -> None:
    url, server = await make_relay(relay_config)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    async with WebSocketTransport(
        session,
        url,
        rng=lambda: 0.5,
        sleep=sleep,
        max_reconnect_attempts=3,
        request_timeout=0.5,
        connect_timeout=1.0,
    ) as t:
        events = Events(t)
        await server.close()
        assert await events.next() == Disconnected()
        assert await events.next() == Disconnected(final=True)
        with pytest.raises(StopAsyncIteration):
            await events.next()
        assert delays == [0.25, 0.5, 1.0]  # jitter * min(30, 0.5 * 2**attempt)
        with pytest.raises(TransportError):
            await t.deposit(os.urandom(16), ct(), eid=eid())


async def test_backoff_is_capped(session: aiohttp.ClientSession) -> None:
    t = WebSocketTransport(session, "http://127.0.0.1:1", rng=lambda: 1.0)
    assert [t._backoff(n) for n in (0, 1, 5, 6, 100)] == [0.5, 1.0, 16.0, 30.0, 30.0]


async def test_no_common_version(link: MemoryLink) -> None:
    relay, session = link.url, link.default_session
    with pytest.raises(TransportError, match="version"):
        async with WebSocketTransport(session, relay, versions=VersionRange(2, 3)):
            pass


async def test_spread_one_connection_per_mailbox(link: MemoryLink) -> None:
    relay, session = link.url, link.default_session
    http = HTTPTransport(session, relay)
    boxes = [await new_mailbox(http) for _ in range(2)]
    async with spread(
        [cred for cred, _, _ in boxes], lambda: WebSocketTransport(session, relay)
    ) as pairs:
        assert len({id(t) for _, t in pairs}) == 2
        for (cred, t), (_, sid, _) in zip(pairs, boxes, strict=True):
            events = Events(t)
            assert await events.until_caught_up(cred.rid) == []
            await http.deposit(sid, ct(), eid=eid())
            (got,) = await events.delivered(1)
            assert got.rid == cred.rid
    for cred, _, _ in boxes:
        await http.delete_mailbox(cred)


def test_credential_repr_hides_everything() -> None:
    rid = bytes(range(16))
    cred = MailboxCredential(rid, Key().sign)
    text = repr(cred) + str(cred)
    assert rid.hex() not in text and "sign" not in text and "\\x" not in text
    assert rid.hex() not in repr(Delivered(rid, None))  # type: ignore[arg-type]


def test_both_transports_share_one_api() -> None:
    shared = {
        name
        for name, value in vars(RelayAPI).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    }
    # revision 5: moderation_keys; revision 9: fanout, delegated_caps; 12: set_push, clear_push;
    # 15: recall
    assert len(shared) == 19
    for cls in (HTTPTransport, WebSocketTransport):
        assert issubclass(cls, RelayAPI)
        assert not shared & set(vars(cls)), f"{cls.__name__} re-implements a shared operation"
        for name in shared:
            doc = inspect.getdoc(getattr(cls, name)) or ""
            # Raises sections name the wire codes.
            assert re.search(r"Raises:.*RelayRejected:[^:]*``[A-Z_]+``", doc, re.S), name
    # What each transport adds on top.
    assert {"fetch"} <= set(vars(HTTPTransport))
    assert {"events", "subscribe", "unsubscribe", "ack"} <= set(vars(WebSocketTransport))


def bad_calls(
    t: RelayAPI, cred: MailboxCredential, sid: bytes
) -> list[Callable[[], Awaitable[object]]]:
    """One call per shared operation with a field the relay would refuse."""
    short = MailboxCredential(cred.rid[:15], cred.sign)
    return [
        lambda: t.deposit(sid[:15], ct(), eid=eid()),
        lambda: t.deposit(sid, ct(), eid=eid()[:15]),
        lambda: t.deposit(sid, ct(), eid=eid(), cap=bytes(31)),
        lambda: t.delete_mailbox(short),
        lambda: t.mailbox_info(short),
        lambda: t.set_caps(cred, add=[bytes(31)]),
        lambda: t.ban(cred, remove=[bytes(16)] * 65),
        lambda: t.set_boundaries(short, DEFAULT_BOUNDARIES),
        lambda: t.report(
            cred,
            msg=b"m",
            fk=bytes(31),
            fc=bytes(32),
            ft=bytes(32),
            fx=b"x",
            sender=bytes(32),
            recipient=bytes(32),
            reason=REPORT_REASONS[0],
        ),
        lambda: t.report_status(cred, bytes(15)),
        lambda: t.put_prekeys(cred, one_time=[b""]),
        lambda: t.boundaries(sid[:15]),
        lambda: t.pow_challenge(sid + b"\x00"),
        lambda: t.fetch_bundle(b""),
        lambda: t.create_mailbox(bytes(32), cred.sign, kind="nope"),
        lambda: t.fanout([(sid[:15], bytes(32))], ct(), eid=eid()),
        lambda: t.fanout([(sid, bytes(32)), (sid, bytes(32))], ct(), eid=eid()),
        lambda: t.fanout([(sid, bytes(32))] * 1001, ct(), eid=eid()),
        lambda: t.delegated_caps(sid[:15], bytes(32), cred.sign, remove=[bytes(32)]),
        lambda: t.delegated_caps(sid, bytes(32), cred.sign, add=[bytes(31)]),
        lambda: t.set_push(cred, "https://push.example/u", bytes(31)),
        lambda: t.set_push(cred, "ftp://push.example/u", bytes(32)),
        lambda: t.clear_push(short),
        lambda: t.deposit(sid, ct(), eid=eid(), rc=bytes(31)),
        lambda: t.recall(sid[:15], eid(), bytes(32)),
        lambda: t.recall(sid, eid(), bytes(31)),
    ]


async def test_local_checks_change_nothing_on_either_transport(link: MemoryLink) -> None:
    async with link.websocket() as ws:
        http = link.http()
        cred, sid, _ = await new_mailbox(ws)
        before = await http.mailbox_info(cred)
        for t in (ws, http):
            calls = bad_calls(t, cred, sid)
            for call in calls:
                with pytest.raises(LocalProtocolError):
                    await call()
        # Over the socket the announced envelope limit is checked before sending.
        assert ws.limits is not None
        with pytest.raises(LocalProtocolError, match="envelope limit"):
            await ws.deposit(sid, ct(ws.limits.max_envelope + 1), eid=eid())
        after = await http.mailbox_info(cred)
        assert dataclasses.replace(after, id=before.id) == before  # the same but the request id
        await ws.delete_mailbox(cred)
