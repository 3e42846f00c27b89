"""Consent and boundaries through clientlib.Client against a real relay (both backends):
pairwise capabilities, blocking, declines that ban, boundaries and proof of work, daily
quotas, privacy settings, what the relay holds, account deletion and export."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import (
    Client,
    ClientWarning,
    DeliveryChanged,
    MessageReceived,
    PrivacySettings,
    RequestReceived,
)
from clientlib.client._book import credential
from clientlib.client.client import BoundaryViolation
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError
from clientlib.transport import HTTPTransport
from clientlib.wire.frames import Boundaries


@pytest.fixture
async def pair(tmp_path: Path, relay: str) -> Any:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        yield alice, bob


async def test_pairwise_mailboxes_need_the_capability(
    pair: tuple[Client, Client], relay: str
) -> None:
    alice, bob = pair
    a_bob, _ = await befriend(alice, bob)
    c = alice._book.contacts[bytes.fromhex(a_bob)]
    async with aiohttp.ClientSession() as s:
        http = HTTPTransport(s, relay)
        ct = os.urandom(256)
        for cap in (None, os.urandom(32), bob._book.contacts[next(iter(bob._book.contacts))].mycap):
            # no capability, a forged one, and Bob's capability for *his* mailbox (cross-mailbox)
            with pytest.raises(RelayRejected) as info:
                await http.deposit(c.sid, ct, eid=os.urandom(16), cap=cap)
            assert info.value.code == "AUTH"
        with pytest.raises(RelayRejected) as unknown:
            await http.deposit(os.urandom(16), ct, eid=os.urandom(16), cap=c.mycap)
        assert unknown.value.code == "AUTH"  # the same answer as a mailbox that does not exist


async def test_block_refuses_and_unblock_restores(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    a_bob, b_alice = await befriend(alice, bob)
    blocked = await alice.block(a_bob)
    assert blocked.blocked
    with pytest.raises(LocalProtocolError):
        await alice.send(a_bob, "to a blocked contact")
    await bob.send(b_alice, "can you hear me?")
    warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "mailbox_lost")
    assert warn.detail == "AUTH"  # indistinguishable from a deleted mailbox
    failed = await wait_for(bob, DeliveryChanged)
    assert failed.state == "failed"
    await alice.unblock(a_bob)
    await bob.send(b_alice, "and now?")
    got = await wait_for(alice, MessageReceived)
    assert got.message.text == "and now?"  # the blocked message never arrived


async def test_decline_bans_the_requester_on_that_address(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    inv = await alice.create_invitation()
    await bob.send_request(inv, intro="first try")
    req = await wait_for(alice, RequestReceived)
    await alice.decline_request(req.request)
    again = await bob.send_request(inv, intro="second try")
    warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "request_refused")
    assert warn.detail == "AUTH" and warn.contact_id == again.id
    await asyncio.sleep(0.3)
    assert alice.requests() == []
    # Another address of Alice's is unaffected (handles are per address).
    other = await alice.create_invitation(new_address=True)
    await bob.send_request(other)
    await wait_for(alice, RequestReceived)


async def test_decline_without_the_relay_changes_nothing(tmp_path: Path, relay: str) -> None:
    """protocol.md §22.3 step 5: the ban is the decline. Not connected, decline_request
    raises and keeps the request; connected, it bans, and the same identity cannot ask again."""
    async with make(tmp_path, "bob", relay) as bob:
        async with make(tmp_path, "alice", relay) as alice:
            inv = await alice.create_invitation()
            await bob.send_request(inv, intro="first try")
            await wait_for(alice, RequestReceived)
        passphrase = b"pw-alice long test passphrase"
        offline = replace(FAST, connect=False)
        async with Client.open(tmp_path / "alice.keystore", passphrase, config=offline) as a2:
            [req] = a2.requests()
            with pytest.raises(TransportError):
                await a2.decline_request(req)
            assert [r.id for r in a2.requests()] == [req.id]  # nothing changed
            await a2.connect()
            await a2.decline_request(req)
            assert a2.requests() == []
            bans = {label: info.bans for label, info in await a2.relay_holdings()}
            assert bans["address 1"] == 1
            again = await bob.send_request(inv, intro="second try")
            warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "request_refused")
            assert warn.detail == "AUTH" and warn.contact_id == again.id


async def test_boundaries_are_published_and_enforced(tmp_path: Path, relay: str) -> None:
    strict = Boundaries(size=2048, att=0, day=2, pow=10)
    async with (
        make(tmp_path, "alice", relay, boundaries=strict) as alice,
        make(tmp_path, "bob", relay) as bob,
    ):
        inv = await alice.create_invitation()
        async with aiohttp.ClientSession() as s:
            assert await HTTPTransport(s, relay).boundaries(inv.sid) == strict
        # Over the size class: refused by the client before anything is created or sent.
        with pytest.raises(BoundaryViolation):
            await bob.send_request(inv, intro="x" * 1000)
        assert bob.contacts() == []
        # Within bounds: proof of work paid, delivered.
        await bob.send_request(inv, intro="short")
        await wait_for(alice, RequestReceived)
        # The daily quota (2) is shared by everyone; the third request of the day is refused.
        async with make(tmp_path, "carol", relay) as carol:
            await carol.send_request(inv)
            await wait_for(alice, RequestReceived)
        async with make(tmp_path, "dave", relay) as dave:
            await dave.send_request(inv)
            warn = await wait_for(dave, ClientWarning, lambda w: w.kind == "request_refused")
            assert warn.detail == "QUOTA"
        assert len(alice.requests()) == 2
        looser = Boundaries(size=4096, att=0, day=10, pow=0)
        await alice.set_boundaries(looser)
        async with aiohttp.ClientSession() as s:
            assert await HTTPTransport(s, relay).boundaries(inv.sid) == looser


async def test_privacy_settings_reach_the_contact(pair: tuple[Client, Client]) -> None:
    alice, bob = pair
    a_bob, b_alice = await befriend(alice, bob)
    mine = await alice.set_privacy(a_bob, receipts=False, media=False)
    assert not mine.settings.receipts and not mine.settings.media and mine.settings.typing
    await alice.send(a_bob, "settings sent before this")
    await wait_for(bob, MessageReceived)
    peer = bob.contact(b_alice).peer_settings
    assert peer is not None and not peer.receipts and not peer.media and peer.typing


async def test_each_side_knows_the_others_default_settings_from_the_start(
    pair: tuple[Client, Client],
) -> None:
    """Issue 22, snag 8: the defaults are exchanged at acceptance, not only on a change."""
    alice, bob = pair
    a_bob, b_alice = await befriend(alice, bob)
    await bob.sync()
    await alice.sync()
    async with asyncio.timeout(15):
        while None in (alice.contact(a_bob).peer_settings, bob.contact(b_alice).peer_settings):
            await asyncio.sleep(0.05)
    assert alice.contact(a_bob).peer_settings == PrivacySettings()
    assert bob.contact(b_alice).peer_settings == PrivacySettings()


async def test_relay_holdings_then_delete_account(tmp_path: Path, relay: str) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        a_bob, b_alice = await befriend(alice, bob)
        await alice.send(a_bob, "kept until acked")
        holdings = await bob.relay_holdings()
        labels = [label for label, _ in holdings]
        assert labels == [f"contact {b_alice}"]  # bob has no address, one pairwise mailbox
        info = holdings[0][1]
        # The contact's capability and its attachment capability (media on, §4.8 rev. 8).
        assert info.kind == "pair" and info.caps == 2
        a_holdings = dict(await alice.relay_holdings())
        addr = a_holdings["address 1"]
        assert addr.kind == "addr" and addr.prekey_static == 1 and addr.prekeys_left >= 8
        creds = [credential(a.rid, a.owner) for a in alice._book.addresses.values()]
        creds += [credential(c.rid, c.owner) for c in alice._book.contacts.values()]
        export = tmp_path / "alice-export.json"
        alice.export(export)
        doc = json.loads(export.read_text())
        assert doc["format"] == "blindrelay-export"
        assert doc["contacts"][0]["messages"][-1]["text"] == "kept until acked"
        assert oct(export.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(FileExistsError):
            alice.export(export)
        await alice.delete_account()
        assert not (tmp_path / "alice.keystore").exists()
        assert not (tmp_path / "alice.keystore.history").exists()
        async with aiohttp.ClientSession() as s:
            http = HTTPTransport(s, relay)
            for cred in creds:
                with pytest.raises(RelayRejected) as gone:
                    await http.mailbox_info(cred)
                assert gone.value.code == "AUTH"
        await bob.send(b_alice, "anyone there?")
        warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "mailbox_lost")
        assert warn.detail == "AUTH"


async def test_boundaries_persist_across_restarts(tmp_path: Path, relay: str) -> None:
    chosen = Boundaries(size=8192, att=1, day=7, pow=4)
    async with make(tmp_path, "alice", relay) as alice:
        await alice.set_boundaries(chosen)  # before any address exists
    async with Client.open(
        tmp_path / "alice.keystore", b"pw-alice long test passphrase", config=FAST
    ) as a2:
        assert a2.boundaries() == chosen
        inv = await a2.create_invitation()
        async with aiohttp.ClientSession() as s:
            assert await HTTPTransport(s, relay).boundaries(inv.sid) == chosen
