"""clientlib.Client against a real relay on loopback (both backends): invitations, requests
(accepted, declined, replayed), pairwise mailboxes, delivery, catch-up, persistence, HTTP
fallback, spread connections, prekey exhaustion and refill, keystore errors."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from clientkit import FAST, befriend, make, wait_for
from liverelay import free_port

from clientlib.client import (
    CaughtUp,
    Client,
    ClientWarning,
    ContactAdded,
    DeliveryChanged,
    Invitation,
    MessageReceived,
    RequestReceived,
)
from clientlib.client._book import credential
from clientlib.client.content import ContactRequestContent
from clientlib.client.invite import open_bundle
from clientlib.crypto import IdentityKeyPair
from clientlib.errors import LocalProtocolError, TransportError
from clientlib.keystore import (
    CorruptKeystore,
    KeystoreLocked,
    UnsupportedKeystoreVersion,
    WrongPassphrase,
)
from clientlib.session import ModeratorKey, initiate
from clientlib.transport import HTTPTransport
from clientlib.wire.pow import solve


async def deposit_request(
    http: HTTPTransport, sid: bytes, ct: bytes, fc: bytes | None, *, hdl: bytes = b"h" * 16
) -> None:
    """Deposit a hand-made contact request, paying the address's proof of work."""
    eid = os.urandom(16)
    chal = await http.pow_challenge(sid)
    counter = solve(sid, chal.nonce, eid, chal.bits)
    await http.deposit(sid, ct, eid=eid, fc=fc, hdl=hdl, pow=(chal.nonce, counter))


@pytest.fixture
async def pair(tmp_path: Path, relay: str) -> AsyncIterator[tuple[Client, Client]]:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        yield alice, bob


async def test_request_accept_and_converse(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    a_bob, b_alice = await befriend(alice, bob)
    # Names travel inside the encrypted request and acceptance.
    assert alice.contact(a_bob).name == "bob" and bob.contact(b_alice).name == "alice"
    for i in range(20):
        await bob.send(b_alice, f"b{i}")
        await alice.send(a_bob, f"a{i}")
    got_a = [(await wait_for(alice, MessageReceived)).message.text for _ in range(20)]
    got_b = [(await wait_for(bob, MessageReceived)).message.text for _ in range(20)]
    assert got_a == [f"b{i}" for i in range(20)]
    assert got_b == [f"a{i}" for i in range(20)]
    await bob.sync()
    hist = bob.messages(b_alice)
    assert [m.text for m in hist if m.direction == "out"] == [f"b{i}" for i in range(20)]
    # Stored at the relay; "delivered" once alice's receipts (delayed or carried by her
    # replies, issue 13) came back; never "read" (nobody marked anything read).
    assert all(m.state in ("sent", "delivered") for m in hist if m.direction == "out")
    assert [m.text for m in alice.messages(a_bob) if m.direction == "in"] == got_a
    # The two sides use different mailboxes, and none of them is the address.
    a = alice._book.contacts[bytes.fromhex(a_bob)]
    b = bob._book.contacts[bytes.fromhex(b_alice)]
    addr = next(iter(alice._book.addresses.values()))
    assert len({a.sid, b.sid, addr.sid, a.rid, b.rid, addr.rid}) == 6
    assert a.send == b.sid and b.send == a.sid


async def test_messages_before_acceptance_wait_then_flow(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    inv = await alice.create_invitation()
    pending = await bob.send_request(inv)
    await bob.send(pending, "sent while pending")
    req = await wait_for(alice, RequestReceived)
    assert alice.contacts() == []  # nothing reaches a conversation before acceptance
    contact = await alice.accept_request(req.request)
    msg = await wait_for(alice, MessageReceived)
    assert msg.message.text == "sent while pending" and msg.contact.id == contact.id


async def test_decline_is_silent_and_final(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    inv = await alice.create_invitation()
    pending = await bob.send_request(inv, intro="let me in")
    req = await wait_for(alice, RequestReceived)
    await alice.decline_request(req.request.id)
    assert alice.requests() == [] and alice.contacts() == []
    with pytest.raises(LocalProtocolError):
        await alice.accept_request(req.request.id)
    await bob.send(pending, "anyone?")
    await asyncio.sleep(0.5)
    assert bob.contact(pending.id).state == "pending"
    assert [m.state for m in bob.messages(pending)] == ["queued"]  # no destination: never sent


async def test_replayed_request_is_dropped(pair: tuple[Client, Client], relay: str) -> None:
    alice, _ = pair
    inv = await alice.create_invitation()
    # A hand-made request (what any client sends), deposited once and then replayed twice under
    # new envelope ids, as a relay or an eavesdropper could.
    mallory = IdentityKeyPair.generate(os.urandom)
    async with aiohttp.ClientSession() as s:
        http = HTTPTransport(s, relay)
        static, item = await http.fetch_bundle(inv.sid)
        bundle = open_bundle(inv, static, item)
        content = ContactRequestContent(
            reply=os.urandom(16), cap=os.urandom(32), name="mallory"
        ).encode()
        moderator = ModeratorKey(*(await http.moderation_keys())[0])  # revision 5: AMF
        _, sealed = initiate(
            mallory, bundle, content, rng=os.urandom, now=int(time.time()), moderator=moderator
        )
        for i in range(3):
            await deposit_request(http, inv.sid, sealed.ct, sealed.fc, hdl=bytes([i]) * 16)
    await wait_for(alice, RequestReceived)
    warn = await wait_for(alice, ClientWarning, lambda w: w.kind == "duplicate_request")
    assert warn.kind == "duplicate_request"
    await wait_for(alice, ClientWarning, lambda w: w.kind == "duplicate_request")
    assert len(alice.requests()) == 1


async def test_garbage_on_address_is_dropped_and_acked(
    pair: tuple[Client, Client], relay: str
) -> None:
    alice, bob = pair
    inv = await alice.create_invitation()
    async with aiohttp.ClientSession() as s:
        await deposit_request(HTTPTransport(s, relay), inv.sid, os.urandom(2048), None)
    await wait_for(alice, ClientWarning, lambda w: w.kind == "undecryptable")
    await bob.send_request(inv)  # the address still works
    await wait_for(alice, RequestReceived)


async def test_offline_recipient_catches_up_and_state_persists(tmp_path: Path, relay: str) -> None:
    alice = make(tmp_path, "alice", relay)
    async with alice, make(tmp_path, "bob", relay) as bob:
        a_bob, b_alice = await befriend(alice, bob)
        await alice.send(a_bob, "before")
        await wait_for(bob, MessageReceived)
        await bob.sync()
    # Alice is closed; Bob goes on writing.
    async with Client.open(
        tmp_path / "bob.keystore", b"pw-bob long test passphrase", config=FAST
    ) as bob:
        for i in range(30):
            await bob.send(b_alice, f"offline {i}")
        await bob.sync()
    async with Client.open(
        tmp_path / "alice.keystore", b"pw-alice long test passphrase", config=FAST
    ) as alice2:
        got = [(await wait_for(alice2, MessageReceived)).message.text for _ in range(30)]
        await wait_for(alice2, CaughtUp)
        assert got == [f"offline {i}" for i in range(30)]
        texts = [m.text for m in alice2.messages(a_bob)]
        assert texts[0] == "before" and texts[-1] == "offline 29"
        assert alice2.contact(a_bob).name == "bob"
        await alice2.send(a_bob, "back")
    async with Client.open(
        tmp_path / "bob.keystore", b"pw-bob long test passphrase", config=FAST
    ) as bob2:
        assert (await wait_for(bob2, MessageReceived)).message.text == "back"


async def test_sending_while_offline_queues_durably(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        _a_bob, b_alice = await befriend(alice, bob)
        await bob.sync()
    async with Client.open(
        tmp_path / "bob.keystore",
        b"pw-bob long test passphrase",
        config=replace(FAST, connect=False),
    ) as bob:
        for i in range(3):
            msg = await bob.send(b_alice, f"queued {i}")
            assert msg.state == "queued"
    async with (
        Client.open(
            tmp_path / "alice.keystore", b"pw-alice long test passphrase", config=FAST
        ) as alice,
        Client.open(tmp_path / "bob.keystore", b"pw-bob long test passphrase", config=FAST) as bob,
    ):
        sent = await wait_for(bob, DeliveryChanged)
        assert sent.state == "sent"
        got = [(await wait_for(alice, MessageReceived)).message.text for _ in range(3)]
        assert got == ["queued 0", "queued 1", "queued 2"]


async def test_http_fallback_and_spread(tmp_path: Path, relay: str) -> None:
    async with (
        make(tmp_path, "alice", relay, transport="http", poll_interval=0.2) as alice,
        make(tmp_path, "bob", relay, spread=True) as bob,
    ):
        a_bob, b_alice = await befriend(alice, bob)
        await alice.send(a_bob, "over http")
        await bob.send(b_alice, "over spread sockets")
        assert (await wait_for(bob, MessageReceived)).message.text == "over http"
        assert (await wait_for(alice, MessageReceived)).message.text == "over spread sockets"
        assert len(bob._link.ws_by_rid) == 1 and bob._link.ws is None  # one socket per mailbox


async def test_prekey_exhaustion_falls_back_and_refills(
    pair: tuple[Client, Client], relay: str
) -> None:
    alice, bob = pair
    inv = await alice.create_invitation()
    async with aiohttp.ClientSession() as s:
        http = HTTPTransport(s, relay)
        while (await http.fetch_bundle(inv.sid))[1] is not None:
            pass  # someone drains every one-time item
    await bob.send_request(inv)
    await wait_for(alice, ClientWarning, lambda w: w.kind == "prekeys_exhausted")
    req = await wait_for(alice, RequestReceived)
    await alice.accept_request(req.request)
    await wait_for(bob, ContactAdded)
    # The refill brought the address back up.
    async with asyncio.timeout(10):
        while True:
            a = next(iter(alice._book.addresses.values()))
            left, has_static = await alice._link.transport().put_prekeys(credential(a.rid, a.owner))
            if left >= 8:
                break
            await asyncio.sleep(0.1)
    assert has_static


async def test_own_invitation_refused_and_unreachable_relay(pair: tuple[Client, Client]) -> None:
    alice, _ = pair
    inv = await alice.create_invitation()
    with pytest.raises(LocalProtocolError):
        await alice.send_request(inv)
    # Another relay is fine (protocol.md §27.1); one that does not answer fails cleanly and
    # leaves nothing behind.
    other = Invitation(f"http://127.0.0.1:{free_port()}", inv.sid, inv.key)
    with pytest.raises(TransportError):
        await alice.send_request(other.link)
    assert alice.contacts() == []
    assert (await alice.create_invitation()).link == inv.link  # same address by default
    assert (await alice.create_invitation(new_address=True)).link != inv.link


@pytest.mark.parametrize("damage", ["wrong-passphrase", "truncated", "newer-version"])
async def test_keystore_errors_are_clear_and_change_nothing(
    tmp_path: Path, relay: str, damage: str
) -> None:
    path = tmp_path / "alice.keystore"
    async with make(tmp_path, "alice", relay, connect=False):
        pass
    passphrase = b"pw-alice long test passphrase"
    if damage == "wrong-passphrase":
        passphrase = b"not it"
        expected: type[Exception] = WrongPassphrase
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
        expected = CorruptKeystore
    else:
        data = bytearray(path.read_bytes())
        data[4] = 99  # the format version byte (see clientlib/keystore/file.py)
        path.write_bytes(bytes(data))
        expected = UnsupportedKeystoreVersion
    before = path.read_bytes()
    history_before = (tmp_path / "alice.keystore.history").read_bytes()
    with pytest.raises(expected) as info:
        async with Client.open(path, passphrase, config=FAST):
            pass
    assert "pw-alice" not in str(info.value)
    assert path.read_bytes() == before
    assert (tmp_path / "alice.keystore.history").read_bytes() == history_before


async def test_second_process_on_same_keystore_is_locked(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay, connect=False):
        with pytest.raises(KeystoreLocked):
            async with Client.open(
                tmp_path / "alice.keystore", b"pw-alice long test passphrase", config=FAST
            ):
                pass
