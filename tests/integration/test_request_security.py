"""Issue 20, finding 5, through real clients and a live relay: what a pending contact request
leaks, and what its session keeps.

Messages written while a request is pending used to be sealed at once with the pending
session, as prekey messages of 2,048 bytes or more, and reached the acceptor's new pairwise
mailbox in that size class: the relay could link the new mailbox to the request (which went
to the address in the same class) against protocol.md §22.4. They are kept unsealed in the
encrypted keystore now and sealed as ratchet messages when the acceptance arrives.

The responder's session of a request not yet answered used to hold the signed prekey's
private key (the ratchet's first ``DHs``) past the address's rotation of it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from clientkit import FAST, make, wait_for

from clientlib.client import Client, ContactAdded, MessageReceived, RequestReceived
from clientlib.client.state import OutboxRecord
from clientlib.crypto import PreKeyKind
from clientlib.session import PREKEY_MESSAGE_OVERHEAD, SessionRecord
from relay.appkeys import store_key
from relay.config import RelayConfig

PASS = b"pw-alice long test passphrase"


async def test_messages_written_while_pending_reach_the_new_mailbox_as_ratchet_messages(
    tmp_path: Path,
    make_relay,  # type: ignore[no-untyped-def]
    relay_config: RelayConfig,
) -> None:
    url, server = await make_relay(relay_config)
    store = server.app[store_key]
    texts = ["are you there?", "it's me, from the meeting", "x" * 300]
    async with make(tmp_path, "bob", url) as bob:
        async with make(tmp_path, "alice", url) as alice:
            inv = await alice.create_invitation()
            pending = await bob.send_request(inv.link, intro="hello")
            req = await wait_for(alice, RequestReceived)
            for text in texts:  # Alice has not answered yet
                await bob.send(pending.id, text)
            # Nothing is sealed while pending: the plaintext waits in Bob's keystore.
            queued = [OutboxRecord.from_bytes(v) for _, v in bob._book.ks.items("outbox")]
            waiting = [r for r in queued if r.pt is not None]
            assert len(waiting) == 3 and all(r.ct == b"" and r.sid is None for r in waiting)
            contact = await alice.accept_request(req.request)
            a1 = alice._book.contacts[bytes.fromhex(contact.id)].rid
        # Alice is offline: what Bob flushes on the acceptance stays stored in her mailbox A1.
        await wait_for(bob, ContactAdded)
        await bob.sync()
        await bob.send(pending.id, "x" * 300)  # the same text, sent after acceptance
        await bob.sync()
    now = int(time.time())
    stored = await store.fetch(a1, 0, 10, 10**6, now)
    sizes = [len(e.ct) for e in stored]
    assert len(sizes) == 4
    # The attack was: sizes[:3] in the request's class, that of prekey messages (the smallest
    # holds a 1,134-byte handshake header: 2,048 bytes or more), on the new mailbox.
    assert PREKEY_MESSAGE_OVERHEAD > 1024
    assert all(s < 2048 for s in sizes), sizes
    assert sizes[2] == sizes[3]  # the pending one is indistinguishable from a later one
    async with Client.open(tmp_path / "alice.keystore", PASS, config=FAST) as alice:
        got = [(await wait_for(alice, MessageReceived)).message.text for _ in range(4)]
        assert got == [*texts, "x" * 300]


async def test_pending_request_session_holds_no_signed_prekey(
    tmp_path: Path, relay: str
) -> None:
    async with make(tmp_path, "alice", relay) as alice, make(tmp_path, "bob", relay) as bob:
        inv = await alice.create_invitation()
        await bob.send_request(inv.link)
        req = await wait_for(alice, RequestReceived)
        address = next(iter(alice._book.addresses.values()))
        spk = alice._prekeys.load(PreKeyKind.X25519_SIGNED, address.spk)
        assert spk is not None
        qid = bytes.fromhex(req.request.id)
        record = alice._book.requests[qid].session
        # The attack: a keystore read while the request waits yields the SPK private key
        # (even once the address rotated and deleted it). Not any more:
        assert spk.keypair.private_bytes() not in record
        assert SessionRecord.from_bytes(record).dhs_private is None
    async with Client.open(
        tmp_path / "alice.keystore", PASS, config=replace(FAST, connect=False)
    ) as again:
        held = [v for ns in ("requests", "contacts") for _, v in again._book.ks.items(ns)]
        assert held and all(spk.keypair.private_bytes() not in v for v in held)
