"""Issue 20 findings 3 and 4 reproduced through the real client and a live relay.

Invitation links commit to the inviter's identity key (finding 4):

The attack: whoever knows a link's ``sid`` and ``k`` (the relay operator, for a published
link; an invitee colluding with it) seals a bundle of its OWN identity under them and has the
relay serve it. With a version-1 link the requester accepts it and talks to the attacker; a
version-2 link carries a hash of the inviter's identity key, and the requester refuses.

Deleting a contact deletes its history, and the history detects truncation (finding 3).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import Client, IdentityMismatch, Invitation, MessageReceived
from clientlib.client.history import CorruptHistory
from clientlib.client.invite import seal_static
from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.crypto.fingerprint import safety_number
from clientlib.keystore import FileKeystore
from relay.appkeys import store_key
from relay.config import RelayConfig


async def test_relay_substituted_bundle_is_refused_for_v2_links(
    tmp_path: Path,
    make_relay,  # type: ignore[no-untyped-def]
    relay_config: RelayConfig,
) -> None:
    url, server = await make_relay(relay_config)
    store = server.app[store_key]
    async with make(tmp_path, "alice", url) as alice, make(tmp_path, "bob", url) as bob:
        inv = await alice.create_invitation()
        # Version 3 since revision 11: version 2 plus the relay's identity hash (§27.3).
        assert inv.version == 3 and inv.commits_to_identity
        assert Invitation.parse(inv.link) == inv
        # The operator looks up the address behind the published sid (it holds that map) and
        # replaces the hosted static part with one sealed under the link's k for its own
        # identity (and drops the one-time items, so the last-resort key is used).
        (address,) = alice._book.addresses.values()
        mallory = IdentityKeyPair.generate(os.urandom)
        spk = PreKeyPair.generate(mallory, PreKeyKind.X25519_SIGNED, 1, os.urandom)
        lr = PreKeyPair.generate(mallory, PreKeyKind.MLKEM_LAST_RESORT, 2, os.urandom)
        forged = seal_static(
            inv.key, inv.sid, mallory.public, spk.public_record, lr.public_record, os.urandom
        )
        await store.put_prekeys(address.rid, forged, [], True, 200, int(time.time()))

        with pytest.raises(IdentityMismatch, match="does not match the invitation"):
            await bob.send_request(inv.link)
        assert bob.contacts() == [] and bob._book.ks.items("outbox") == []  # nothing kept

        # The same address through a version-1 link (the upgrade path accepts old links):
        # nothing to check against, so the substitution goes through, and the new contact
        # holds the attacker's identity: only a safety-number comparison would tell.
        old = Invitation(inv.relay_url, inv.sid, inv.key)
        assert old.version == 1 and not old.commits_to_identity
        assert old.link.split("#")[1][0] == "A" and len(old.link.split("#")[1]) == 66
        contact = await bob.send_request(old.link)
        cid = bytes.fromhex(contact.id)
        assert bob._book.contacts[cid].identity == bytes(mallory.public) != bytes(alice.identity)
        assert contact.safety_number != safety_number(bob.identity, alice.identity)


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 24
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos : pos + 4 + n])
        pos += 4 + n
    return out


async def test_remove_contact_shreds_history_and_truncation_is_detected(
    tmp_path: Path, relay: str
) -> None:
    """Finding 3 (issue 20) through the real client and relay: messages of a removed contact
    leave the history file with their key, and cutting records off the file (formerly: the
    trailing "forget" record, which brought the conversation back) makes the open fail."""
    history = tmp_path / "alice.keystore.history"
    async with (
        make(tmp_path, "alice", relay) as alice,
        make(tmp_path, "bob", relay) as bob,
        make(tmp_path, "carol", relay) as carol,
    ):
        a_bob, b_alice = await befriend(alice, bob)
        a_carol, c_alice = await befriend(alice, carol)
        for sender, cid, text in ((bob, b_alice, "secret from bob"), (carol, c_alice, "hi")):
            await sender.send(cid, text)
            got = await wait_for(alice, MessageReceived, lambda e, t=text: e.message.text == t)
            assert got.message.text == text
        await alice.send(a_bob, "reply to bob")
        await alice.send(a_carol, "reply to carol")
        async with asyncio.timeout(15):
            await alice.sync()
        before = history.read_bytes()
        key_entry = alice._book.ks.get("history-keys", a_bob.encode())
        assert key_entry is not None
        bob_frames = [f for f in _frames(before) if f[4:20] == key_entry[:16]]
        assert len(bob_frames) == 3  # his message, our reply, its delivery state
        await alice.remove_contact(a_bob)
        after = history.read_bytes()
        assert all(f[4:] not in after for f in bob_frames)
        assert alice._book.ks.get("history-keys", a_bob.encode()) is None
        assert [m.text for m in alice.messages(a_carol)] == ["hi", "reply to carol"]
    # The keystore on disk holds no trace of the destroyed key.
    ks = FileKeystore.open(
        tmp_path / "alice.keystore", b"pw-alice long test passphrase", rng=os.urandom
    )
    held = [v for ns in ("history-keys", "history", "meta") for _, v in ks.items(ns)]
    assert held and all(key_entry[16:] not in v for v in held)
    ks.close()
    # The attacks on the file: splice the pre-deletion file back, truncate the last record,
    # drop one, reorder two. Each makes the client refuse to open, and changes nothing.
    good = history.read_bytes()
    frames = _frames(good)
    assert len(frames) >= 2
    header = good[:24]
    attacks = {
        "splice": before,
        "truncate": header + b"".join(frames[:-1]),
        "drop": header + b"".join(frames[1:]),
        "reorder": header + frames[1] + frames[0] + b"".join(frames[2:]),
    }
    for name, data in attacks.items():
        history.write_bytes(data)
        with pytest.raises(CorruptHistory):
            async with Client.open(
                tmp_path / "alice.keystore",
                b"pw-alice long test passphrase",
                config=replace(FAST, connect=False),
            ):
                pass
        assert history.read_bytes() == data, name
    history.write_bytes(good)
    async with Client.open(
        tmp_path / "alice.keystore",
        b"pw-alice long test passphrase",
        config=replace(FAST, connect=False),
    ) as again:
        assert [m.text for m in again.messages(a_carol)] == ["hi", "reply to carol"]
        assert again.contacts() and all(c.id != a_bob for c in again.contacts())
