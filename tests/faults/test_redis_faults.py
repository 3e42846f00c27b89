"""Issue 19, findings 1, 3, 4 and 5 on a live relay over a real ``redis-server``: killed,
stalled, out of memory, its AOF disk full."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import pytest
import redis
from faultkit import bucket, fetch_all, grow, metric, new_mailbox
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import Deposit, EnvelopeDelivered, ErrorReply, Ok, RequestChallenge

pytestmark = pytest.mark.redis


@contextmanager
def stalled(server: Any) -> Iterator[None]:
    """``redis-server`` stopped (SIGSTOP) inside the block: its sockets stay open, nothing
    answers; continued (SIGCONT) after, whatever happens."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def test_deposit_stored_then_publish_fails_is_ok_and_the_wakeup_is_recovered(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 1. Redis fails between storing a deposit and publishing its wake-up (here: an
    ACL that refuses PUBLISH to the relay's user, every time). The deposit is stored, so it
    is answered ``ok`` (it was INTERNAL, with a traceback quoting the Redis address); the
    owner subscribed on another relay process gets the envelope once publishing works again
    (the publisher publishes it again)."""
    server = redis_server_factory()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command("ACL", "SETUSER", "relay", "on", ">relaypw", "~*", "&*", "+@all")
    admin.execute_command("ACL", "SETUSER", "relay", "-publish")
    url = f"redis://relay:relaypw@127.0.0.1:{server.port}/0"
    depositor = relay_factory("a", storage="redis", redis_url=url)
    listener = relay_factory("b", storage="redis", redis_url=url)
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http_b = HTTPClient(session, listener.url)
        rid, sid = await new_mailbox(http_b, owner)
        async with WSClient(session, listener.url) as ws:
            await ws.subscribe(owner, rid)
            await ws.next_push()  # drained: nothing stored yet
            eid = os.urandom(16)
            reply = await HTTPClient(session, depositor.url).deposit(sid, bucket(), eid=eid)
            assert isinstance(reply, Ok)
            with pytest.raises(TimeoutError):
                await ws.next_push(timeout=1.0)  # the wake-up could not be published
            admin.execute_command("ACL", "SETUSER", "relay", "+publish")
            pushed = await ws.next_push(timeout=10)
            assert isinstance(pushed, EnvelopeDelivered)
            assert pushed.env.eid == eid
        text = depositor.log_text()
        assert '"wakeup_publish_failed"' in text
        assert '"level": "warning"' in text
        assert await metric(session, depositor, "blindrelay_storage_errors_total", 'kind="wakeup"')
    admin.close()


async def test_redis_killed_under_deposits_answers_ok_or_unavailable_and_keeps_every_ok(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 1 the way it was seen: redis-server killed (SIGKILL) and restarted from its
    AOF under a stream of deposits. Every answer is ``ok`` or ``UNAVAILABLE`` (never
    INTERNAL), every ``ok`` is fetched afterwards, the log has no traceback or address."""
    server = redis_server_factory()
    relay = relay_factory(storage="redis", redis_url=server.url, storage_timeout_s="3")
    owner = Owner()
    acked: set[bytes] = set()
    codes: dict[str, int] = {}
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, sid = await new_mailbox(http, owner)

        async def sender() -> None:
            while not stop.is_set():
                eid = os.urandom(16)
                frame = Deposit(id=1, sid=sid, eid=eid, flags=0, ct=bucket())
                try:
                    _, reply = await http.post("/v1/deposit", frame.encode())
                except aiohttp.ClientError:
                    continue
                if isinstance(reply, Ok):
                    acked.add(eid)
                    codes["ok"] = codes.get("ok", 0) + 1
                else:
                    assert isinstance(reply, ErrorReply)
                    codes[reply.code] = codes.get(reply.code, 0) + 1
                    await asyncio.sleep(0.02)

        senders = [asyncio.create_task(sender()) for _ in range(8)]
        await asyncio.sleep(0.5)
        server.stop(kill=True)
        await asyncio.sleep(1.0)
        server.start()
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*senders)
        assert set(codes) <= {"ok", "UNAVAILABLE"}, codes
        assert codes.get("ok", 0) > 0 and codes.get("UNAVAILABLE", 0) > 0, codes
        found = await fetch_all(http, owner, rid)
        assert acked <= set(found)
        assert len(found) == len(set(found))  # and nothing twice


async def test_stalled_redis_is_unavailable_at_the_bound_and_a_retry_is_deduplicated(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 4. Redis stopped (SIGSTOP) longer than ``storage_timeout_s``: the deposit is
    answered ``UNAVAILABLE`` at the bound (not INTERNAL, not after minutes); it may be
    stored all the same once Redis continues, so the client retries with the same eid and
    gets ``ok`` with one envelope stored (protocol.md §6)."""
    server = redis_server_factory()
    relay = relay_factory(storage="redis", redis_url=server.url, storage_timeout_s="1.5")
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, sid = await new_mailbox(http, owner)
        eid = os.urandom(16)
        frame = Deposit(id=7, sid=sid, eid=eid, flags=0, ct=bucket())
        with stalled(server):
            started = time.monotonic()
            status, reply = await http.post("/v1/deposit", frame.encode())
            waited = time.monotonic() - started
            assert isinstance(reply, ErrorReply) and reply.code == "UNAVAILABLE"
            assert status == 503
            assert 1.0 < waited < 4.0, waited
            # /readyz says so too, within its own bound.
            async with session.get(relay.url + "readyz") as resp:
                assert resp.status == 503
        retry = Deposit(id=8, sid=sid, eid=eid, flags=0, ct=bucket())
        for _ in range(50):
            status, reply = await http.post("/v1/deposit", retry.encode())
            if isinstance(reply, Ok):
                break
            await asyncio.sleep(0.1)
        assert isinstance(reply, Ok)
        envs = await http.fetch(owner, rid)
        assert [e.eid for e in envs.envs] == [eid]


async def test_redis_out_of_memory_still_lets_owners_free_memory(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 3. Redis at ``maxmemory`` with ``noeviction``: deposits are ``STORAGE_FULL``,
    and so is a challenge for anything that adds data; but an HTTP owner still gets
    challenges for ``fetch`` and ``delete`` (the challenge write was refused, so it could
    not), fetches, acks and deletes; a WebSocket owner subscribes and acks."""
    server = redis_server_factory("--maxmemory-policy", "noeviction")
    relay = relay_factory(storage="redis", redis_url=server.url)
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    owner, other = Owner(), Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, sid = await new_mailbox(http, owner)
        rid2, sid2 = await new_mailbox(http, other)
        eids = [os.urandom(16) for _ in range(8)]
        for eid in eids:
            await http.deposit(sid, bucket(16384), eid=eid)
            await http.deposit(sid2, bucket(16384))
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(used // 2))
        try:
            _, reply = await http.post(
                "/v1/deposit",
                Deposit(id=5, sid=sid, eid=os.urandom(16), flags=0, ct=bucket()).encode(),
            )
            assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("STORAGE_FULL", 5)
            _, reply = await http.post(
                "/v1/challenge", RequestChallenge(id=6, op="create").encode()
            )
            assert isinstance(reply, ErrorReply) and reply.code == "STORAGE_FULL"
            page = await http.fetch(owner, rid, max=2)
            assert [e.eid for e in page.envs] == eids[:2]
            page = await http.fetch(owner, rid, ack=[e.seq for e in page.envs], max=2)
            assert [e.eid for e in page.envs] == eids[2:4]
            await http.delete(other, rid2)
            async with WSClient(session, relay.url) as ws:
                await ws.subscribe(owner, rid)
                seqs = []
                for _ in range(6):
                    push = await ws.next_push()
                    assert isinstance(push, EnvelopeDelivered)
                    seqs.append(push.env.seq)
                assert isinstance(await ws.ack(rid, seqs), Ok)
        finally:
            admin.config_set("maxmemory", "0")
        assert isinstance(await http.deposit(sid, bucket()), Ok)
    admin.close()


async def test_redis_exiting_on_a_full_aof_disk_is_unavailable_and_recovers(
    redis_server_factory: Any, relay_factory: Any, small_fs: Any
) -> None:
    """Finding 5. The filesystem of Redis's AOF fills: with ``appendfsync always`` Redis
    exits (documented Redis behaviour). The relay answers ``UNAVAILABLE`` (never INTERNAL,
    never ``ok`` for what is not stored); after the operator's recovery of deploy/README.md
    (give the AOF room, start Redis again from it) the same relay process serves again and
    every deposit it acknowledged is there."""
    directory = small_fs(8)
    server = redis_server_factory()
    server.stop()
    server.directory = directory
    server.start()
    relay = relay_factory(storage="redis", redis_url=server.url, storage_timeout_s="3")
    owner = Owner()
    acked: list[bytes] = []
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, sid = await new_mailbox(http, owner)
        refused: list[str] = []
        for _ in range(300):
            eid = os.urandom(16)
            frame = Deposit(id=1, sid=sid, eid=eid, flags=0, ct=bucket(65536))
            _, reply = await http.post("/v1/deposit", frame.encode())
            if isinstance(reply, Ok):
                acked.append(eid)
                continue
            assert isinstance(reply, ErrorReply)
            refused.append(reply.code)
            if len(refused) >= 3:
                break
        assert acked and refused == ["UNAVAILABLE"] * 3
        assert server.proc is not None and server.proc.wait(10) != 0  # Redis exited
        # Recovery: room for the AOF (here the tmpfs grows), then Redis starts from it.
        server.stop()
        await asyncio.to_thread(grow, directory, 64)
        server.start()
        for _ in range(50):
            status, _ = await http.post(
                "/v1/deposit",
                Deposit(id=2, sid=sid, eid=acked[0], flags=0, ct=bucket(65536)).encode(),
            )
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200  # a retry of an acknowledged eid: a duplicate, ok
        assert await fetch_all(http, owner, rid) == acked


async def test_a_subscriber_that_lost_its_wakeups_rechecks_storage(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 1, the other side: the relay process holding an owner's socket loses its
    pub/sub connection while another process stores an envelope for that owner (its
    wake-up is published to nobody). Once its connection is back it re-reads storage for
    every subscription, so the owner gets the envelope without re-subscribing."""
    server = redis_server_factory()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command("ACL", "SETUSER", "sub", "on", ">subpw", "~*", "&*", "+@all")
    depositor = relay_factory("a", storage="redis", redis_url=server.url)
    listener = relay_factory(
        "b", storage="redis", redis_url=f"redis://sub:subpw@127.0.0.1:{server.port}/0"
    )
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, depositor.url)
        rid, sid = await new_mailbox(http, owner)
        async with WSClient(session, listener.url) as ws:
            await ws.subscribe(owner, rid)
            await ws.next_push()  # drained
            # Cut the listener off: its user may not log in, its connections are killed.
            admin.execute_command("ACL", "SETUSER", "sub", "off")
            admin.execute_command("CLIENT", "KILL", "USER", "sub")
            eid = os.urandom(16)
            assert isinstance(await http.deposit(sid, bucket(), eid=eid), Ok)
            with pytest.raises(TimeoutError):
                await ws.next_push(timeout=0.5)  # published while nobody listened
            admin.execute_command("ACL", "SETUSER", "sub", "on")
            pushed = await ws.next_push(timeout=10)
            assert isinstance(pushed, EnvelopeDelivered) and pushed.env.eid == eid
    assert '"wakeups_connection_lost"' in listener.log_text()
    admin.close()


async def test_a_push_read_that_outlasts_the_bound_closes_with_1013(
    redis_server_factory: Any, relay_factory: Any
) -> None:
    """Finding 4 on the push path: a subscription's storage read is bounded by
    ``storage_timeout_s`` too. Redis holds every write script (``CLIENT PAUSE ... WRITE``,
    the push read is one) while the relay re-reads storage for its subscriptions: the socket
    is closed with 1013 (try again later) at the bound, as for any storage failure while
    pushing, instead of hanging until Redis continues."""
    server = redis_server_factory()
    admin = redis.Redis(host="127.0.0.1", port=server.port)
    admin.execute_command("ACL", "SETUSER", "sub", "on", ">subpw", "~*", "&*", "+@all")
    relay = relay_factory(
        storage="redis",
        redis_url=f"redis://sub:subpw@127.0.0.1:{server.port}/0",
        storage_timeout_s="1",
    )
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, relay.url)
        rid, _ = await new_mailbox(http, owner)
        async with WSClient(session, relay.url) as client:
            await client.subscribe(owner, rid)
            await client.next_push()  # drained
            # The pub/sub connection is cut; when it is back the relay re-reads storage for
            # the subscription, and that read is held by the pause.
            admin.execute_command("ACL", "SETUSER", "sub", "off")
            admin.execute_command("CLIENT", "KILL", "USER", "sub")
            for _ in range(50):
                if '"wakeups_connection_lost"' in relay.log_text():
                    break
                await asyncio.sleep(0.05)
            admin.execute_command("CLIENT", "PAUSE", "8000", "WRITE")
            admin.execute_command("ACL", "SETUSER", "sub", "on")
            started = time.monotonic()
            assert client.ws is not None and client._reader is not None
            await asyncio.wait_for(asyncio.shield(client._reader), 7)  # the socket closed
            assert client.ws.close_code == 1013
            assert time.monotonic() - started < 6
        admin.execute_command("CLIENT", "UNPAUSE")
    assert '"push_failed"' in relay.log_text()
    admin.close()
