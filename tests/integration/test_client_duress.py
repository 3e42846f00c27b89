"""Duress passphrase through the real client and a live relay (issue 15): the decoy opens,
talks to the relay as its own identity, and the real keystore and history stay byte for
byte as they were (or are wiped, as configured)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import Client, MessageReceived
from clientlib.keystore import WrongPassphrase

DURESS = "purple elephant under the stairs"


def files(tmp_path: Path, name: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(tmp_path.glob(f"{name}.keystore*"))}


@pytest.mark.parametrize("wipe", [False, True])
async def test_duress_open_on_a_live_relay(tmp_path: Path, relay: str, wipe: bool) -> None:
    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    async with alice, bob:
        a_bob, _ = await befriend(alice, bob)
        await bob.send(bob.contacts()[0], "for alice only")
        await wait_for(alice, MessageReceived)
        await alice.set_duress(DURESS, wipe=wipe, decoy_name="al")
        real_identity = alice.identity
    before = files(tmp_path, "alice")
    sizes = {k: len(v) for k, v in before.items()}
    path = tmp_path / "alice.keystore"
    decoy = Client.open(path, DURESS, config=FAST)
    async with decoy:
        assert decoy.identity != real_identity
        assert decoy.contacts() == [] and decoy.name == "al"
        inv = await decoy.create_invitation()  # a working identity at the relay
        assert inv.link.startswith(relay)
    after = files(tmp_path, "alice")
    real = Client.open(path, "pw-alice long test passphrase", config=replace(FAST, connect=False))
    if not wipe:
        assert {k: v for k, v in after.items() if k != "alice.keystore.slot"} == {
            k: v for k, v in before.items() if k != "alice.keystore.slot"
        }
        assert len(after["alice.keystore.slot"]) == sizes["alice.keystore.slot"]
        async with real:
            assert real.identity == real_identity
            [msg] = [m for m in real.messages(a_bob) if m.direction == "in"]
            assert msg.text == "for alice only"
    else:
        assert "alice.keystore.history" in before
        assert b"for alice only" not in b"".join(after.values())
        with pytest.raises(WrongPassphrase):
            await real.start()
        async with Client.open(path, DURESS, config=replace(FAST, connect=False)) as again:
            assert again.contacts() == [] and again.name == "al"
