"""Acceptance: a live relay process on each backend relays 10,000 envelopes with none lost,
none duplicated and order kept, and a SIGKILL during deposits loses no acknowledged one."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from liverelay import RelayProcess
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import Drained, EnvelopeDelivered, ErrorReply

N = 10_000
WINDOW = 128


def payload(i: int) -> bytes:
    return i.to_bytes(8, "big") + bytes(248)


async def test_ten_thousand_envelopes_in_order(live_relay: RelayProcess) -> None:
    owner = Owner()
    async with (
        aiohttp.ClientSession() as session,
        WSClient(session, live_relay.url) as ows,
        WSClient(session, live_relay.url) as sws,
    ):
        rid, sid = await ows.create_mailbox(owner)
        await ows.subscribe(owner, rid)
        assert isinstance(await ows.next_push(), Drained)

        async def send() -> None:
            sem = asyncio.Semaphore(WINDOW)

            async def one(i: int) -> None:
                async with sem:
                    await sws.deposit(sid, payload(i))

            tasks = []
            for i in range(N):
                await sem.acquire()
                sem.release()
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)

        async def receive() -> list[int]:
            got: list[int] = []
            pending: list[int] = []
            while len(got) < N:
                frame = await ows.next_push(30)
                assert isinstance(frame, EnvelopeDelivered)
                got.append(int.from_bytes(frame.env.ct[:8], "big"))
                pending.append(frame.env.seq)
                if len(pending) >= 64 or len(got) == N:
                    await ows.ack(rid, pending)
                    pending = []
            return got

        _, got = await asyncio.gather(send(), receive())
    assert len(got) == N
    assert len(set(got)) == N  # none duplicated
    assert got == list(range(N))  # none lost, order kept
    # Nothing left behind.
    async with aiohttp.ClientSession() as session:
        assert (await HTTPClient(session, live_relay.url).fetch(owner, rid)).envs == ()


@pytest.mark.slow
async def test_sigkill_loses_no_acknowledged_envelope(live_relay: RelayProcess) -> None:
    owner = Owner()
    eids = [os.urandom(16) for _ in range(4000)]
    acked: set[int] = set()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, live_relay.url)
        rid, sid = await http.create_mailbox(owner)
        senders = [WSClient(session, live_relay.url) for _ in range(4)]
        for s in senders:
            await s.__aenter__()

        async def sender(k: int) -> None:
            ws = senders[k]
            for i in range(k, len(eids), len(senders)):
                try:
                    reply = await ws.deposit(sid, payload(i), eid=eids[i], check=False)
                except (ConnectionError, TimeoutError, aiohttp.ClientError):
                    return
                if isinstance(reply, ErrorReply):
                    return
                acked.add(i)

        tasks = [asyncio.create_task(sender(k)) for k in range(len(senders))]
        while len(acked) < 1500:
            await asyncio.sleep(0.01)
        live_relay.kill()  # mid-deposit, with requests in flight
        await asyncio.gather(*tasks)
        for s in senders:
            await s.__aexit__(None, None, None)
        acked_before_kill = set(acked)
        assert len(acked_before_kill) >= 1500

    live_relay.start()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, live_relay.url)
        # The sender retries everything it has no ack for, with the same envelope ids.
        for i in range(len(eids)):
            if i not in acked_before_kill:
                await http.deposit(sid, payload(i), eid=eids[i])
        seen: list[int] = []
        ack: list[int] = []
        while True:
            page = await http.fetch(owner, rid, ack=ack, max=256)
            seen += [int.from_bytes(e.ct[:8], "big") for e in page.envs]
            ack = [e.seq for e in page.envs]
            if not page.envs:
                break
    assert acked_before_kill <= set(seen)  # nothing acknowledged was lost
    assert sorted(seen) == list(range(len(eids)))  # and retries duplicated nothing
