"""Push wake-ups without content (protocol.md §28): a real in-process relay on loopback, both
backends, and a local aiohttp HTTP receiver on a free port standing in for a UnifiedPush
distributor. Registration over HTTP and WebSocket; deposits over WebSocket.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import relaydriver
from aiohttp import web
from aiohttp.test_utils import TestServer
from clientkit import befriend, make
from prometheus_client.parser import text_string_to_metric_families
from relaydriver import HTTPClient, Owner, RelayRejectedError, WSClient

from clientlib.errors import LocalProtocolError, RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential
from clientlib.wire import Ok, capability_hash
from relay.config import RelayConfig

MakeRelay = Callable[[RelayConfig], Awaitable[tuple[str, TestServer]]]
#: Every header a wake-up may carry: none names the mailbox, the sender or the relay software.
ALLOWED_HEADERS = {"host", "content-type", "content-length", "ttl", "urgency"}
QUIET = 0.6  # how long "no wake-up" is watched for (the random delay is at most 0.05 s)


class Receiver:
    """A push distributor on loopback: records each POST's body and headers."""

    def __init__(self) -> None:
        self.posts: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.posts.put((request.path_qs, body, dict(request.headers)))
        return web.Response(status=201)

    async def next(self, timeout: float = 5) -> tuple[str, bytes, dict[str, str]]:
        return await asyncio.wait_for(self.posts.get(), timeout)

    async def quiet(self) -> None:
        await asyncio.sleep(QUIET)
        assert self.posts.empty(), "unexpected wake-up"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/up/{name}", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    rec.url = str(server.make_url("/up/abc?x=1"))
    yield rec
    await server.close()


def fast(cfg: RelayConfig, **changes: Any) -> RelayConfig:
    settings: dict[str, Any] = {
        "push_allow_private": True,
        "push_delay_max_s": 0.05,
        "push_interval_s": 30.0,
    }
    return replace(cfg, **(settings | changes))


def token() -> bytes:
    tok = os.urandom(32)
    relaydriver.remember(tok)
    return tok


async def push_op(
    client: WSClient | HTTPClient, owner: Owner, rid: bytes, op: str, **fields: Any
) -> Any:
    nonce = await client.challenge(op, rid)
    cmd = owner.command(next(client.ids), op=op, nonce=nonce, rid=rid, **fields)
    if isinstance(client, HTTPClient):
        return await client.call("/v1/owner", cmd)
    return await client.request(cmd)


async def counter(session: aiohttp.ClientSession, relay: str, outcome: str) -> float:
    async with session.get(relay + "metrics") as r:
        text = await r.text()
    for fam in text_string_to_metric_families(text):
        if fam.name == "blindrelay_push_wakeups":
            for s in fam.samples:
                if s.labels.get("outcome") == outcome:
                    return float(s.value)
    return 0.0


async def test_wakeup_carries_only_the_token_and_is_coalesced(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    owner: Owner,
    receiver: Receiver,
) -> None:
    relay, _ = await make_relay(fast(relay_config))
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    tok = token()
    assert isinstance(await push_op(http, owner, rid, "push", url=receiver.url, tok=tok), Ok)
    async with WSClient(session, relay) as ws:
        await ws.deposit(sid, os.urandom(256))
        path, body, headers = await receiver.next()
        assert body == tok  # the whole body: nothing else
        assert path == "/up/abc?x=1"  # the URL exactly as registered
        assert {h.lower() for h in headers} <= ALLOWED_HEADERS, headers
        blob = repr(headers).lower()
        for secret in (rid, sid, tok, owner.pk):
            assert secret.hex() not in blob
        # Coalesced: a second deposit within the interval sends nothing more.
        await ws.deposit(sid, os.urandom(256))
        await receiver.quiet()
    assert await counter(session, relay, "sent") == 1
    assert await counter(session, relay, "coalesced") == 1


async def test_no_wakeup_while_the_owner_is_connected(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    owner: Owner,
    receiver: Receiver,
) -> None:
    relay, _ = await make_relay(fast(relay_config))
    async with WSClient(session, relay) as ws, WSClient(session, relay) as sender:
        rid, sid = await ws.create_mailbox(owner)
        assert isinstance(await push_op(ws, owner, rid, "push", url=receiver.url, tok=token()), Ok)
        await ws.subscribe(owner, rid)
        await sender.deposit(sid, os.urandom(256))
        await ws.next_push()
        await receiver.quiet()
        # Unsubscribed (the owner went away): the next envelope wakes the endpoint.
        await ws.unsubscribe(rid)
        await sender.deposit(sid, os.urandom(256))
        _, body, _ = await receiver.next()
        assert len(body) == 32


async def test_no_wakeup_after_unregister_or_delete(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    owner: Owner,
    receiver: Receiver,
) -> None:
    cfg = fast(relay_config, push_interval_s=0.0)
    relay, _ = await make_relay(cfg)
    async with WSClient(session, relay) as ws:
        rid, sid = await ws.create_mailbox(owner)
        tok = token()
        assert isinstance(await push_op(ws, owner, rid, "push", url=receiver.url, tok=tok), Ok)
        await ws.deposit(sid, os.urandom(256))
        assert (await receiver.next())[1] == tok
        assert isinstance(await push_op(ws, owner, rid, "unpush"), Ok)
        await ws.deposit(sid, os.urandom(256))
        await receiver.quiet()
        # Registered again, then the mailbox is deleted: its endpoint goes with it.
        assert isinstance(await push_op(ws, owner, rid, "push", url=receiver.url, tok=tok), Ok)
        await ws.delete(owner, rid)
        with pytest.raises(RelayRejectedError) as err:
            await ws.deposit(sid, os.urandom(256))
        assert err.value.code == "AUTH"
        await receiver.quiet()
    if cfg.storage == "sqlite":
        db = sqlite3.connect(cfg.resolved_sqlite_path())
        try:
            assert db.execute("SELECT count(*) FROM push").fetchone() == (0,)
        finally:
            db.close()


async def test_private_addresses_refused_without_the_setting(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    owner: Owner,
    receiver: Receiver,
) -> None:
    relay, _ = await make_relay(replace(relay_config, push_delay_max_s=0.05))
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    port = receiver.url.split(":")[2].split("/")[0]
    for url in (receiver.url, f"https://127.0.0.1:{port}/up/a", f"https://[::1]:{port}/up/a"):
        with pytest.raises(RelayRejectedError) as err:
            await push_op(http, owner, rid, "push", url=url, tok=token())
        assert err.value.code == "MALFORMED"
    # A host name is checked when the wake-up is sent: every address it resolves to.
    url = f"https://localhost:{port}/up/a"
    assert isinstance(await push_op(http, owner, rid, "push", url=url, tok=token()), Ok)
    await http.deposit(sid, os.urandom(256))
    for _ in range(50):
        if await counter(session, relay, "refused") >= 1:
            break
        await asyncio.sleep(0.05)
    assert await counter(session, relay, "refused") == 1
    assert await counter(session, relay, "sent") == 0
    assert receiver.posts.empty()


async def test_bad_registrations_change_nothing(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    owner: Owner,
    receiver: Receiver,
) -> None:
    relay, _ = await make_relay(fast(relay_config))
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    tok = token()
    assert isinstance(await push_op(http, owner, rid, "push", url=receiver.url, tok=tok), Ok)
    bad: list[dict[str, Any]] = [
        {"url": "https://example.org/" + "a" * 600, "tok": token()},  # over 512 bytes
        {"url": "ftp://example.org/up", "tok": token()},
        {"url": "https://user:pw@example.org/up", "tok": token()},
        {"url": "https://exa mple.org/up", "tok": token()},
        {"url": "https:///nohost", "tok": token()},
        {"url": receiver.url, "tok": os.urandom(16)},  # the token is 32 bytes
        {"url": receiver.url},  # push needs both
    ]
    for fields in bad:
        with pytest.raises(RelayRejectedError) as err:
            await push_op(http, owner, rid, "push", **fields)
        assert err.value.code == "MALFORMED", fields
    with pytest.raises(RelayRejectedError) as err:
        await push_op(http, owner, rid, "unpush", tok=token())
    assert err.value.code == "MALFORMED"
    # The endpoint registered first is still the one woken, with its token.
    await http.deposit(sid, os.urandom(256))
    path, body, _ = await receiver.next()
    assert (path, body) == ("/up/abc?x=1", tok)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_client_registers_on_every_mailbox(
    make_relay: MakeRelay, relay_config: RelayConfig, tmp_path: Path, receiver: Receiver
) -> None:
    """``Client.register_push`` / ``unregister_push``: offline Alice is woken by Bob's message
    with the token she chose; a bad token or endpoint is refused before anything changes."""
    relay, _ = await make_relay(fast(relay_config))
    tok = token()
    async with make(tmp_path, "bob", relay) as bob:
        async with make(tmp_path, "alice", relay) as alice:
            _, alice_id = await befriend(alice, bob)
            with pytest.raises(LocalProtocolError):
                await alice.register_push(receiver.url, b"short")
            with pytest.raises(LocalProtocolError):
                await alice.register_push("ftp://example.org/up")
            with pytest.raises(RelayRejected) as err:
                await alice.register_push("http://example.org/up")  # http: relay refuses
            assert err.value.code == "MALFORMED"
            assert len(await alice.register_push(receiver.url)) == 32
            await alice.unregister_push()
            assert await alice.register_push(receiver.url, tok) == tok
        await bob.send(alice_id, "wake up")
        _, body, _ = await receiver.next(timeout=10)
        assert body == tok


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_group_fanout_wakes_each_offline_member(
    make_relay: MakeRelay,
    relay_config: RelayConfig,
    session: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    relay, _ = await make_relay(fast(relay_config))
    t = HTTPTransport(session, relay)
    base = receiver.url.split("/up/")[0]
    expected = set()
    entries = []
    for name in ("m1", "m2"):
        owner = Owner()
        rid, sid = await t.create_mailbox(owner.pk, owner.sign, kind="pair")
        relaydriver.remember(rid, sid)
        cred, cap = MailboxCredential(rid, owner.sign), os.urandom(32)
        await t.set_caps(cred, add=[capability_hash(sid, cap)])
        tok = token()
        await t.set_push(cred, f"{base}/up/{name}", tok)
        expected.add((f"/up/{name}", tok))
        entries.append((sid, cap))
    n, bad = await t.fanout(entries, os.urandom(512), eid=os.urandom(16))
    assert (n, bad) == (2, {})
    got = {(await receiver.next())[:2] for _ in range(2)}
    assert got == expected
