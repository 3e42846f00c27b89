"""Acceptance (issue 16 item 1, protocol.md §27.1): one client receiving on several relays.

Alice's home relay is R1; she also receives on R2 through an invitation made there. Bob comes
through her R1 invitation (his home is R1), Carol through her R2 one (her home is R2). Each
conversation's mailboxes of Alice are on the relay its address is on, with a connection of its
own: while R2 is down Bob's conversation goes on, and what Carol sent meanwhile reaches Alice
once R2 is back (catch-up). A scan of both relays' data shows each mailbox on one relay only.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from clientkit import make, wait_for
from liverelay import RelayProcess, start_relay

from clientlib.client import Client, ContactAdded, MessageReceived, RequestReceived
from clientlib.client.invite import Invitation
from clientlib.client.relayurl import normalize_relay_url


@pytest.fixture
def relays(tmp_path: Path):
    a, b = start_relay(tmp_path, "relay-1"), start_relay(tmp_path, "relay-2")
    yield a, b
    a.stop()
    b.stop()


def _stored(relay: RelayProcess) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(relay.data_dir.rglob("*")) if p.is_file())


def _holds(blob: bytes, value: bytes) -> bool:
    forms = [value, value.hex().encode(), base64.urlsafe_b64encode(value).rstrip(b"=")]
    return any(f in blob for f in forms)


async def _text(client: Client, timeout: float = 20) -> str:
    return (await wait_for(client, MessageReceived, timeout=timeout)).message.text


async def _join(owner: Client, requester: Client, link: str) -> tuple[str, str]:
    await requester.send_request(link, intro="hi")
    req = await wait_for(owner, RequestReceived)
    contact = await owner.accept_request(req.request)
    added = await wait_for(requester, ContactAdded)
    return contact.id, added.contact.id


async def test_receiving_on_two_relays(
    tmp_path: Path, relays: tuple[RelayProcess, RelayProcess]
) -> None:
    r1, r2 = relays
    alice = make(tmp_path, "alice", r1.url)
    bob = make(tmp_path, "bob", r1.url)
    carol = make(tmp_path, "carol", r2.url)
    async with alice, bob, carol:
        inv1 = await alice.create_invitation()
        inv2 = await alice.create_invitation(relay=r2.url)
        assert normalize_relay_url(Invitation.parse(inv2.link).relay_url) == normalize_relay_url(
            r2.url
        )
        assert (await alice.create_invitation(relay=r2.url)).link == inv2.link  # kept
        a_bob, b_alice = await _join(alice, bob, inv1.link)
        a_carol, c_alice = await _join(alice, carol, inv2.link)
        assert [online for _, online in alice.receive_relays()] == [True, True]

        await bob.send(b_alice, "bob to alice")
        assert await _text(alice) == "bob to alice"
        await carol.send(c_alice, "carol to alice")
        from_carol = (await wait_for(alice, MessageReceived)).message
        assert from_carol.text == "carol to alice"
        # Franked by R2, judged with R2's moderator keys and filed at R2 (R1 knows neither
        # the mailbox nor the tag: it would refuse).
        assert await alice.report(from_carol, "harassment")
        await alice.send(a_bob, "alice to bob")
        assert await _text(bob) == "alice to bob"
        await alice.send(a_carol, "alice to carol")
        assert await _text(carol) == "alice to carol"

        # Each of Alice's pairwise mailboxes is on the relay its address is on, and only there.
        bob_box = bob._book.contacts[bytes.fromhex(b_alice)].send
        carol_box = carol._book.contacts[bytes.fromhex(c_alice)].send
        assert bob_box is not None and carol_box is not None
        s1, s2 = _stored(r1), _stored(r2)
        assert _holds(s1, bob_box) and not _holds(s2, bob_box)
        assert _holds(s2, carol_box) and not _holds(s1, carol_box)

        # R2 down: Bob's conversation goes on; Carol's message to Alice waits for R2.
        r2.stop()
        await bob.send(b_alice, "during R2's outage")
        assert await _text(alice) == "during R2's outage"
        await alice.send(a_bob, "still here")
        assert await _text(bob) == "still here"
        assert [online for _, online in alice.receive_relays()] == [True, False]
        await carol.send(c_alice, "sent while R2 was down")
        await asyncio.sleep(0.3)
        r2.start()
        assert await _text(alice, timeout=40) == "sent while R2 was down"
        await alice.send(a_carol, "R2 back")
        assert await _text(carol, timeout=40) == "R2 back"
    # Reopened from the keystore: both receive relays come back, and Alice catches up on R2.
    carol2 = Client.open(tmp_path / "carol.keystore", b"pw-carol long test passphrase")
    async with carol2:
        await carol2.send(c_alice, "while alice was away")
        async with asyncio.timeout(20):
            await carol2.sync()
    alice2 = Client.open(tmp_path / "alice.keystore", b"pw-alice long test passphrase")
    async with alice2:
        assert await _text(alice2) == "while alice was away"
        assert [url for url, _ in alice2.receive_relays()][1] == normalize_relay_url(r2.url)
