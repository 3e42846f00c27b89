"""Invitation links commit to the inviter's identity key (issue 20, finding 4), on a live relay.

The attack: whoever knows a link's ``sid`` and ``k`` (the relay operator, for a published
link; an invitee colluding with it) seals a bundle of its OWN identity under them and has the
relay serve it. With a version-1 link the requester accepts it and talks to the attacker; a
version-2 link carries a hash of the inviter's identity key, and the requester refuses.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from clientkit import make

from clientlib.client import IdentityMismatch, Invitation
from clientlib.client.invite import seal_static
from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.crypto.fingerprint import safety_number
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
        assert inv.version == 2 and inv.commits_to_identity
        assert Invitation.parse(inv.link) == inv
        # The operator looks up the address behind the published sid (it holds that map) and
        # replaces the hosted static part with one sealed under the link's k for its own
        # identity (and drops the one-time items, so the last-resort key is used).
        (address,) = alice._addresses.values()
        mallory = IdentityKeyPair.generate(os.urandom)
        spk = PreKeyPair.generate(mallory, PreKeyKind.X25519_SIGNED, 1, os.urandom)
        lr = PreKeyPair.generate(mallory, PreKeyKind.MLKEM_LAST_RESORT, 2, os.urandom)
        forged = seal_static(
            inv.key, inv.sid, mallory.public, spk.public_record, lr.public_record, os.urandom
        )
        await store.put_prekeys(address.rid, forged, [], True, 200, int(time.time()))

        with pytest.raises(IdentityMismatch, match="does not match the invitation"):
            await bob.send_request(inv.link)
        assert bob.contacts() == [] and bob._ks_().items("outbox") == []  # nothing kept

        # The same address through a version-1 link (the upgrade path accepts old links):
        # nothing to check against, so the substitution goes through, and the new contact
        # holds the attacker's identity: only a safety-number comparison would tell.
        old = Invitation(inv.relay_url, inv.sid, inv.key)
        assert old.version == 1 and not old.commits_to_identity
        assert old.link.split("#")[1][0] == "A" and len(old.link.split("#")[1]) == 66
        contact = await bob.send_request(old.link)
        cid = bytes.fromhex(contact.id)
        assert bob._contacts[cid].identity == bytes(mallory.public) != bytes(alice.identity)
        assert contact.safety_number != safety_number(bob.identity, alice.identity)
