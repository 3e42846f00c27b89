"""The relay end to end over real sockets, on both backends."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import aiohttp
import pytest
from relaydriver import HTTPClient, Owner, RelayRejectedError, WSClient

from clientlib.wire import (
    FLAG_ONLINE_ONLY,
    Drained,
    EnvelopeDelivered,
    ErrorReply,
    Hello,
    decode_relay_frame,
)


def ct(n: int = 1024, fill: int | None = None) -> bytes:
    return bytes([fill]) * n if fill is not None else os.urandom(n)


async def drain_until_drained(ws: WSClient) -> list[EnvelopeDelivered]:
    got: list[EnvelopeDelivered] = []
    while True:
        frame = await ws.next_push()
        if isinstance(frame, Drained):
            return got
        assert isinstance(frame, EnvelopeDelivered)
        got.append(frame)


async def test_hello_and_info(relay: str, session: aiohttp.ClientSession) -> None:
    async with WSClient(session, relay) as ws:
        assert ws.hello is not None
        assert (ws.hello.min, ws.hello.max) == (1, 1)
        assert ws.hello.limits.max_envelope == 65536
    async with session.get(relay + "v1/info") as resp:
        _, frame = decode_relay_frame(await resp.read())
        assert isinstance(frame, Hello)


async def test_push_ack_and_drained(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    async with WSClient(session, relay) as ows, WSClient(session, relay) as sws:
        rid, sid = await ows.create_mailbox(owner)
        assert rid != sid
        # Stored while offline...
        offline = [ct(fill=i) for i in range(5)]
        for c in offline:
            await sws.deposit(sid, c)
        await ows.subscribe(owner, rid)
        got = await drain_until_drained(ows)
        assert [g.env.ct for g in got] == offline
        seqs = [g.env.seq for g in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 5
        assert all(g.rid == rid for g in got)
        # ...and pushed while online.
        live = ct(2048)
        await sws.deposit(sid, live, fc=b"\x07" * 32)
        frame = await ows.next_push()
        assert isinstance(frame, EnvelopeDelivered)
        assert frame.env.ct == live and frame.env.fc == b"\x07" * 32 and frame.env.seq > seqs[-1]
        await ows.ack(rid, [*seqs, frame.env.seq])
    # After the ack nothing is pushed again.
    async with WSClient(session, relay) as ows2:
        await ows2.subscribe(owner, rid)
        assert await drain_until_drained(ows2) == []


async def test_unacked_envelopes_are_redelivered(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    async with WSClient(session, relay) as ows:
        rid, sid = await ows.create_mailbox(owner)
        await ows.deposit(sid, ct(fill=1))
        await ows.deposit(sid, ct(fill=2))
        await ows.subscribe(owner, rid)
        first = await drain_until_drained(ows)
        await ows.ack(rid, [first[0].env.seq])
    async with WSClient(session, relay) as ows:
        await ows.subscribe(owner, rid)
        again = await drain_until_drained(ows)
        assert [e.env.ct for e in again] == [ct(fill=2)]


async def test_idempotent_deposit(relay: str, session: aiohttp.ClientSession, owner: Owner) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    eid = os.urandom(16)
    for _ in range(3):
        await http.deposit(sid, ct(fill=9), eid=eid)
    fetched = await http.fetch(owner, rid)
    assert len(fetched.envs) == 1 and fetched.envs[0].eid == eid
    # Still deduplicated after the ack (within the dedupe window).
    await http.fetch(owner, rid, ack=[fetched.envs[0].seq], max=0)
    await http.deposit(sid, ct(fill=9), eid=eid)
    assert (await http.fetch(owner, rid)).envs == ()


async def test_fifo_under_pipelining(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    async with WSClient(session, relay) as ows, WSClient(session, relay) as sws:
        rid, sid = await ows.create_mailbox(owner)
        await ows.subscribe(owner, rid)
        assert await drain_until_drained(ows) == []
        n = 200
        payloads = [i.to_bytes(4, "big") + bytes(252) for i in range(n)]
        await asyncio.gather(*(sws.deposit(sid, p) for p in payloads))
        got: list[bytes] = []
        seqs: list[int] = []
        while len(got) < n:
            frame = await ows.next_push()
            assert isinstance(frame, EnvelopeDelivered)
            got.append(frame.env.ct)
            seqs.append(frame.env.seq)
            if len(seqs) % 64 == 0:
                await ows.ack(rid, seqs[-64:])
        assert got == payloads
        assert seqs == sorted(seqs)


async def test_http_pull_and_delete(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    for i in range(10):
        await http.deposit(sid, ct(256, fill=i))
    page = await http.fetch(owner, rid, max=4)
    assert [e.ct[0] for e in page.envs] == [0, 1, 2, 3] and page.more == 1
    page2 = await http.fetch(owner, rid, ack=[e.seq for e in page.envs], max=100)
    assert [e.ct[0] for e in page2.envs] == list(range(4, 10)) and page2.more == 0
    await http.delete(owner, rid)
    with pytest.raises(RelayRejectedError) as err:
        await http.deposit(sid, ct(256))
    assert err.value.code == "AUTH"
    with pytest.raises(RelayRejectedError) as err:
        await http.fetch(owner, rid)
    assert err.value.code == "AUTH"


async def test_online_only_is_pushed_never_stored(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    async with WSClient(session, relay) as ows:
        rid, sid = await ows.create_mailbox(owner)
        # Nobody online: accepted, dropped.
        await http.deposit(sid, ct(256, fill=1), flags=FLAG_ONLINE_ONLY)
        await ows.subscribe(owner, rid)
        assert await drain_until_drained(ows) == []
        await http.deposit(sid, ct(256, fill=2), flags=FLAG_ONLINE_ONLY)
        frame = await ows.next_push()
        assert isinstance(frame, EnvelopeDelivered)
        assert frame.env.seq == 0 and frame.env.ct == ct(256, fill=2)
    assert (await http.fetch(owner, rid)).envs == ()


async def test_delete_ends_subscription_and_forgets(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    async with WSClient(session, relay) as ows:
        rid, sid = await ows.create_mailbox(owner)
        await ows.deposit(sid, ct())
        await ows.subscribe(owner, rid)
        await drain_until_drained(ows)
        await ows.delete(owner, rid)
        for target in (sid,):
            reply = await ows.deposit(target, ct(), check=False)
            assert isinstance(reply, ErrorReply) and reply.code == "AUTH"
        with pytest.raises(RelayRejectedError) as err:
            await ows.subscribe(owner, rid)
        assert err.value.code == "AUTH"


async def test_owner_auth_failures_are_all_auth(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    stranger = Owner()
    async with WSClient(session, relay) as ws, WSClient(session, relay) as other:
        rid, sid = await ws.create_mailbox(owner)

        async def attempt(client: WSClient, signer: Owner, nonce: bytes, **fields: object) -> str:
            reply = await client.request(
                signer.command(next(client.ids), nonce=nonce, **fields), check=False
            )
            assert isinstance(reply, ErrorReply)
            return reply.code

        # Wrong key.
        assert (
            await attempt(ws, stranger, await ws.challenge("sub", rid), op="sub", rid=rid) == "AUTH"
        )
        # Unknown mailbox (same error).
        ghost = os.urandom(16)
        assert (
            await attempt(ws, owner, await ws.challenge("sub", ghost), op="sub", rid=ghost)
            == "AUTH"
        )
        # Challenge bound to another operation, another mailbox, another connection.
        assert (
            await attempt(ws, owner, await ws.challenge("delete", rid), op="sub", rid=rid) == "AUTH"
        )
        assert (
            await attempt(ws, owner, await ws.challenge("sub", ghost), op="sub", rid=rid) == "AUTH"
        )
        assert (
            await attempt(other, owner, await ws.challenge("sub", rid), op="sub", rid=rid) == "AUTH"
        )
        # Made-up challenge.
        assert await attempt(ws, owner, os.urandom(32), op="sub", rid=rid) == "AUTH"
        # Replay: a challenge works once.
        nonce = await ws.challenge("sub", rid)
        cmd = owner.command(next(ws.ids), op="sub", nonce=nonce, rid=rid)
        await ws.request(cmd)
        replay = await ws.request(type(cmd)(id=next(ws.ids), cmd=cmd.cmd, sig=cmd.sig), check=False)
        assert isinstance(replay, ErrorReply) and replay.code == "AUTH"
        # A flipped signature bit.
        nonce = await ws.challenge("delete", rid)
        good = owner.command(next(ws.ids), op="delete", nonce=nonce, rid=rid)
        bad_sig = bytes([good.sig[0] ^ 1]) + good.sig[1:]
        bad = await ws.request(type(good)(id=good.id, cmd=good.cmd, sig=bad_sig), check=False)
        assert isinstance(bad, ErrorReply) and bad.code == "AUTH"
        # The mailbox still works.
        await ws.deposit(sid, ct())
        # Acks and unsubscribes for mailboxes not subscribed here are AUTH too.
        with pytest.raises(RelayRejectedError) as err:
            await other.ack(rid, [1])
        assert err.value.code == "AUTH"


async def test_create_rejects_invalid_owner_keys(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    from clientlib.wire import OwnerCommand, SignedOwnerCommand

    small_order = bytes(32)  # the identity-like encodings are small order
    non_canonical = (2**255 - 19 + 1).to_bytes(32, "little")
    async with WSClient(session, relay) as ws:
        for key in (small_order, non_canonical, bytes([1]) + bytes(31)):
            nonce = await ws.challenge("create")
            cmd = OwnerCommand(op="create", nonce=nonce, key=key).encode()
            reply = await ws.request(
                SignedOwnerCommand(id=next(ws.ids), cmd=cmd, sig=owner.sign(cmd)), check=False
            )
            assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED"


async def test_quota(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    url, _server = await make_relay(
        replace(relay_config, mailbox_max_envelopes=3, mailbox_max_bytes=4096)
    )
    http = HTTPClient(session, url)
    rid, sid = await http.create_mailbox(owner)
    for _ in range(3):
        await http.deposit(sid, ct(256))
    with pytest.raises(RelayRejectedError) as err:
        await http.deposit(sid, ct(256))
    assert err.value.code == "QUOTA"
    page = await http.fetch(owner, rid)
    assert len(page.envs) == 3
    await http.fetch(owner, rid, ack=[page.envs[0].seq], max=0)
    # Byte quota: 2 x 256 left of 4096 - 768 used... a 4096-byte envelope does not fit.
    with pytest.raises(RelayRejectedError) as err:
        await http.deposit(sid, ct(4096))
    assert err.value.code == "QUOTA"
    await http.deposit(sid, ct(256))


async def test_connection_limits(
    make_relay, relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    url, _ = await make_relay(replace(relay_config, max_subscriptions=2, max_pending_challenges=3))
    async with WSClient(session, url) as ws:
        rids = [(await ws.create_mailbox(owner))[0] for _ in range(3)]
        await ws.subscribe(owner, rids[0])
        await ws.subscribe(owner, rids[1])
        with pytest.raises(RelayRejectedError) as err:
            await ws.subscribe(owner, rids[2])
        assert err.value.code == "LIMIT"
        for _ in range(3):
            await ws.challenge("sub", rids[0])
        with pytest.raises(RelayRejectedError) as err:
            await ws.challenge("sub", rids[0])
        assert err.value.code == "LIMIT"


async def test_health_ready_metrics(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    _, sid = await http.create_mailbox(owner)
    await http.deposit(sid, ct(256))
    async with session.get(relay + "healthz") as r:
        assert r.status == 200
    async with session.get(relay + "readyz") as r:
        assert r.status == 200
    async with session.get(relay + "metrics") as r:
        text = await r.text()
    assert r.status == 200
    assert 'blindrelay_deposits_total{kind="stored"} 1' in text
    assert "blindrelay_stored_envelopes" in text
    assert sid.hex() not in text


async def test_storage_failure_while_pushing_closes_with_1013(
    relay_config, make_relay, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """A failed push must not leave the owner subscribed-but-deaf: the socket closes with
    1013 and, after reconnecting, the owner gets every unacked envelope."""
    from relay.app import build_backend, create_app
    from relay.storage.base import StorageUnavailable

    store, wakeups = build_backend(relay_config)
    real_fetch = store.fetch
    failures = {"left": 0}

    async def flaky_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise StorageUnavailable("injected")
        return await real_fetch(*args, **kwargs)

    store.fetch = flaky_fetch  # type: ignore[method-assign]
    from aiohttp.test_utils import TestServer

    server = TestServer(create_app(relay_config, store=store, wakeups=wakeups), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/"))
        http = HTTPClient(session, url)
        rid, sid = await http.create_mailbox(owner)
        await http.deposit(sid, ct(256, fill=1))
        async with WSClient(session, url) as ws:
            failures["left"] = 1
            await ws.subscribe(owner, rid)
            assert ws.ws is not None
            for _ in range(100):
                if ws.ws.closed:
                    break
                await asyncio.sleep(0.02)
            assert ws.ws.closed and ws.ws.close_code == 1013
        async with WSClient(session, url) as ws:
            await ws.subscribe(owner, rid)
            got = await drain_until_drained(ws)
            assert [g.env.ct for g in got] == [ct(256, fill=1)]
    finally:
        await server.close()


async def test_pump_reads_storage_only_when_something_waits(
    relay_config, session: aiohttp.ClientSession, owner: Owner
) -> None:  # type: ignore[no-untyped-def]
    """Live envelopes are pushed from the deposit in hand and acks of an up-to-date
    subscription read nothing; with a full window the rest waits in storage and the acks that
    free room push it, in order, with nothing lost."""
    from aiohttp.test_utils import TestServer

    from relay.app import build_backend, create_app

    cfg = replace(relay_config, push_window=4)
    store, wakeups = build_backend(cfg)
    real_fetch = store.fetch
    fetches = {"n": 0}

    async def counting_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
        fetches["n"] += 1
        return await real_fetch(*args, **kwargs)

    store.fetch = counting_fetch  # type: ignore[method-assign]
    server = TestServer(create_app(cfg, store=store, wakeups=wakeups), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/"))
        async with WSClient(session, url) as ows, WSClient(session, url) as sws:
            rid, sid = await ows.create_mailbox(owner)
            await ows.subscribe(owner, rid)
            assert await drain_until_drained(ows) == []
            after_subscribe = fetches["n"]
            for i in range(10):  # one at a time: each is pushed at once and acked
                await sws.deposit(sid, ct(256, fill=i))
                frame = await ows.next_push()
                assert isinstance(frame, EnvelopeDelivered) and frame.env.ct == ct(256, fill=i)
                await ows.ack(rid, [frame.env.seq])
            assert fetches["n"] == after_subscribe
            # Ten more with nobody acking: four fill the window, six wait in storage.
            for i in range(10):
                await sws.deposit(sid, ct(256, fill=100 + i))
            got: list[EnvelopeDelivered] = []
            while len(got) < 10:
                batch = []
                for _ in range(min(4, 10 - len(got))):
                    frame = await ows.next_push()
                    assert isinstance(frame, EnvelopeDelivered)
                    batch.append(frame)
                got += batch
                await ows.ack(rid, [f.env.seq for f in batch])
            assert [g.env.ct for g in got] == [ct(256, fill=100 + i) for i in range(10)]
    finally:
        await server.close()
