"""Issue 19, findings 2 and 4 on a live SQLite relay whose data directory is a real small
filesystem (a tmpfs mounted by the test) that fills up."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
from faultkit import bucket, fetch_all, fill, metric, new_mailbox
from relaydriver import HTTPClient, Owner, RelayRejectedError, WSClient

from clientlib.wire import Deposit, EnvelopeDelivered, ErrorReply, Ok, RequestChallenge


async def _readyz(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url + "readyz") as resp:
        return resp.status, await resp.text()


async def test_full_disk_keeps_owners_draining_and_reports_it(
    relay_factory: Any, small_fs: Any
) -> None:
    """Finding 2. The database's filesystem fills: new deposits are ``STORAGE_FULL`` and
    nothing unstored is acknowledged; the relay gives up its reserve, so challenges, fetch,
    ack and delete still work (they failed: owners could not drain the relay); the state is
    in the log (once), in ``/metrics`` and in ``/readyz`` (503 ``storage full``); once space
    is back the reserve is taken again and deposits are stored."""
    data = small_fs(24)
    relay = relay_factory(data_dir=data, sqlite_reserve_mib="4")
    assert (data / "relay.sqlite3.reserve").stat().st_size == 4 << 20
    owner, other = Owner(), Owner()
    acked: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, sid = await new_mailbox(http, owner)
        rid2, _ = await new_mailbox(http, other)
        for _ in range(8):
            eid = os.urandom(16)
            await http.deposit(sid, bucket(16384), eid=eid)
            acked.append(eid)
        ballast = fill(data)
        codes: set[str] = set()
        for _ in range(400):
            eid = os.urandom(16)
            frame = Deposit(id=1, sid=sid, eid=eid, flags=0, ct=bucket(65536))
            _, reply = await http.post("/v1/deposit", frame.encode())
            if isinstance(reply, Ok):
                acked.append(eid)
                continue
            assert isinstance(reply, ErrorReply)
            codes.add(reply.code)
            break
        assert codes == {"STORAGE_FULL"}
        assert not (data / "relay.sqlite3.reserve").exists()
        assert await _readyz(session, relay.url) == (503, "storage full\n")
        assert await metric(session, relay, "blindrelay_storage_full") == 1
        # Deposits stay refused while full (the reserve is for owners).
        try:
            await http.deposit(sid, bucket())
            raise AssertionError("a deposit was stored on a full disk")
        except RelayRejectedError as exc:
            assert exc.code == "STORAGE_FULL"
        _, reply = await http.post("/v1/challenge", RequestChallenge(id=2, op="create").encode())
        assert isinstance(reply, ErrorReply) and reply.code == "STORAGE_FULL"
        # Owners drain: challenge, fetch, fetch with ack, delete; a socket subscribes and acks.
        page = await http.fetch(owner, rid, max=4)
        assert [e.eid for e in page.envs] == acked[:4]
        page = await http.fetch(owner, rid, ack=[e.seq for e in page.envs], max=2)
        assert [e.eid for e in page.envs] == acked[4:6]
        async with WSClient(session, relay.url) as ws:
            await ws.subscribe(owner, rid)
            push = await ws.next_push()
            assert isinstance(push, EnvelopeDelivered)
            assert isinstance(await ws.ack(rid, [push.env.seq]), Ok)
        await http.delete(other, rid2)
        # Space comes back: the relay notices, takes its reserve again and stores.
        ballast.unlink()
        for _ in range(50):
            if (await _readyz(session, relay.url))[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert await _readyz(session, relay.url) == (200, "ready\n")
        assert (data / "relay.sqlite3.reserve").stat().st_size == 4 << 20
        eid = os.urandom(16)
        await http.deposit(sid, bucket(), eid=eid)
        assert await metric(session, relay, "blindrelay_storage_full") == 0
        rest = await fetch_all(http, owner, rid)
        assert rest[-1] == eid and set(acked[7:]) <= set(rest)
    text = relay.log_text()
    assert text.count('"storage_full"') == 1
    assert '"storage_space_recovered"' in text
