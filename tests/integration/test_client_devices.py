"""Linked devices through the real client and a live relay (issue 15, protocol.md
§24.5-§24.7): linking by approval with compared codes, fan-out of a contact's messages to
every device, copies of sent messages on our other devices, removal, events, and bad input
(a code used twice or late, codes that differ, a tampered device list)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import (
    Client,
    ClientWarning,
    DeviceLinked,
    DeviceRemoved,
    DevicesChanged,
    LinkError,
    MessageChanged,
    MessageReceived,
    MessageSynced,
)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

PASS2 = "pw-alice second device passphrase"


async def link(alice: Client, path: Path, relay: str) -> tuple[Client, str]:
    """Link a second device of ``alice`` at ``path``; returns it (not started) and its id."""
    async with Client.link_device(relay, config=FAST) as linker:
        approval = await alice.start_device_approval(linker.code)
        sas = await linker.wait_for_approver()
        assert sas == approval.sas and len(sas) == 6
        dev = await alice.approve_device(approval, sas, name="laptop")
        second = await linker.finish(path, PASS2, config=FAST)
    return second, dev.id


async def test_link_fan_out_sync_and_removal(tmp_path: Path, relay: str) -> None:
    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    async with alice, bob:
        b_alice, a_bob = await befriend(bob, alice)
        await bob.mark_verified(b_alice)
        second, did = await link(alice, tmp_path / "alice2.keystore", relay)
        linked = await wait_for(alice, DeviceLinked)
        assert linked.device.id == did and linked.device.name == "laptop"
        async with second:
            assert second.identity == alice.identity
            assert (await wait_for(second, DeviceLinked)).device.this_device
            assert [c.id for c in second.contacts()] == [a_bob]
            assert {d.id for d in second.devices()} == {d.id for d in alice.devices()}
            assert len(alice.devices()) == 2
            changed = await wait_for(bob, DevicesChanged)
            assert changed.devices == 2
            assert not bob.contact(b_alice).verified  # the device list changed
            # Bob's message reaches both devices.
            await asyncio.sleep(0.5)  # the device offers and their answers cross
            await bob.send(b_alice, "to every device")
            assert (await wait_for(alice, MessageReceived)).message.text == "to every device"
            assert (await wait_for(second, MessageReceived)).message.text == "to every device"
            # Alice's message from one device appears on the other, and reaches Bob once.
            sent = await second.send(a_bob, "from the laptop")
            got = await wait_for(bob, MessageReceived)
            assert got.message.text == "from the laptop"
            synced = await wait_for(alice, MessageSynced)
            assert synced.message.id == sent.id and synced.message.direction == "out"
            assert [m.text for m in alice.messages(a_bob) if m.direction == "out"] == [
                "from the laptop"
            ]
            await alice.send(a_bob, "from the phone")
            assert (await wait_for(bob, MessageReceived)).message.text == "from the phone"
            assert (await wait_for(second, MessageSynced)).message.text == "from the phone"
            # Remove the first device from the second: Bob stops delivering to it.
            await second.remove_device(alice.devices()[0].id)
            removed = await wait_for(alice, DeviceRemoved)
            assert removed.device.this_device
            await wait_for(bob, DevicesChanged)
            await bob.send(b_alice, "after the removal")
            assert (await wait_for(second, MessageReceived)).message.text == "after the removal"
            await bob.sync()
            await asyncio.sleep(1.0)
            assert "after the removal" not in [m.text for m in alice.messages(a_bob)]
            with pytest.raises(Exception):  # noqa: B017 - removed: nothing of it is read
                await asyncio.wait_for(wait_for(alice, MessageReceived), 1.0)


async def test_read_edit_react_unsend_sync_to_our_other_device(tmp_path: Path, relay: str) -> None:
    """protocol.md §24.7 ``own``: what Alice does on one device shows on the other."""
    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    async with alice, bob:
        b_alice, a_bob = await befriend(bob, alice)
        second, _ = await link(alice, tmp_path / "alice2.keystore", relay)
        async with second:
            await asyncio.sleep(0.5)  # the device offers and their answers cross
            got = await bob.send(b_alice, "read me")
            await wait_for(alice, MessageReceived)
            await wait_for(second, MessageReceived)
            assert [m.seen for m in second.messages(a_bob)] == [False]
            # Reading on the first device marks the message read on the second.
            assert await alice.mark_read(a_bob) == 1
            read = await wait_for(second, MessageChanged)
            assert read.change == "read" and read.message.id == got.id
            assert [m.seen for m in second.messages(a_bob)] == [True]
            # A reaction to Bob's message, then an edit, a reaction and an unsend of ours.
            await alice.react(a_bob, got.id, "👍", direction="in")
            rx = await wait_for(second, MessageChanged)
            assert rx.change == "reaction" and rx.message.reactions == (("me", "👍"),)
            sent = await alice.send(a_bob, "first")
            await wait_for(second, MessageSynced)
            await alice.edit(a_bob, sent.id, "second")
            edited = await wait_for(second, MessageChanged)
            assert edited.change == "edited" and edited.message.text == "second"
            await alice.react(a_bob, sent.id, "🎉", direction="out")
            assert (await wait_for(second, MessageChanged)).message.reactions == (("me", "🎉"),)
            await alice.unsend(a_bob, sent.id)
            gone = await wait_for(second, MessageChanged)
            assert gone.change == "deleted" and gone.message.id == sent.id
            out = [m for m in second.messages(a_bob) if m.direction == "out"]
            assert [m.deleted for m in out] == [True] and "second" not in out[0].text
            # Bob's client saw each change once (no echo from the second device).
            assert (await wait_for(bob, MessageChanged)).change == "reaction"
            # An action that claims to come from our devices but comes from a contact is
            # refused: Bob cannot mark Alice's messages read on her devices.
            from clientlib.client.content import OwnAction, Receipt

            ops = bob._ops  # type: ignore[attr-defined]
            async with bob._book.lock:  # type: ignore[attr-defined]
                ops.seal_and_queue(
                    bytes.fromhex(b_alice),
                    OwnAction(
                        to=bytes.fromhex(a_bob), c=Receipt(rd=(b"x" * 16,)).encode()
                    ).encode(),
                )
            bob._outbox.wake()  # type: ignore[attr-defined]
            warn = await wait_for(alice, ClientWarning, lambda w: w.kind == "malformed_content")
            assert warn.kind == "malformed_content"


async def test_link_code_used_twice_late_or_with_other_codes(tmp_path: Path, relay: str) -> None:
    alice = make(tmp_path, "alice", relay)
    async with alice:
        async with Client.link_device(relay, config=FAST) as linker:
            approval = await alice.start_device_approval(linker.code)
            await linker.wait_for_approver()
            wrong = f"{(int(approval.sas) + 1) % 1_000_000:06d}"
            with pytest.raises(LinkError, match="codes differ"):
                await alice.approve_device(approval, wrong)
            assert len(alice.devices()) == 1  # nothing changed
            await alice.approve_device(approval, approval.sas)
            second = await linker.finish(tmp_path / "a2.keystore", PASS2, config=FAST)
            assert len(alice.devices()) == 2
            code = linker.code
        with pytest.raises(LinkError, match="already used"):
            await alice.start_device_approval(code)  # the link mailbox is gone
        assert len(alice.devices()) == 2
        # Late: a code whose lifetime is over is refused before anything is sent.
        late = FAST
        async with Client.link_device(relay, config=replace(late, clock=lambda: 0.0)) as old_linker:
            with pytest.raises(LinkError, match="expired"):
                await alice.start_device_approval(old_linker.code)
        with pytest.raises(LinkError, match="not a device link code"):
            await alice.start_device_approval("hello")
        with pytest.raises(LinkError, match="damaged"):
            await alice.start_device_approval("brlink1:AAAA")
        assert len(alice.devices()) == 2
    async with second:
        assert second.identity == alice.identity


async def test_tampered_device_list_is_refused(tmp_path: Path, relay: str) -> None:
    from clientlib.client.content import DeviceListContent
    from clientlib.client.devicelist import DeviceList, InvalidDeviceList
    from clientlib.crypto.keys import IdentityKeyPair

    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    async with alice, bob:
        b_alice, a_bob = await befriend(bob, alice)
        mine = alice.devices()[0]
        real = alice._renewal.my_list()
        bad = bytearray(real.raw)
        bad[7] ^= 1  # a device id byte
        with pytest.raises(InvalidDeviceList):
            DeviceList.parse(bytes(bad), alice.identity)
        forged = DeviceList.sign(IdentityKeyPair(bytes(32)), 9, [(bytes(16), "evil")])
        for raw in (bytes(bad), forged.raw):
            content = DeviceListContent(l=raw, me=bytes.fromhex(mine.id)).encode()
            async with alice._book.lock:
                alice._ops.seal_and_queue(bytes.fromhex(a_bob), content)
                await alice._book.save()
            alice._outbox.wake()
            warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "malformed_content")
            assert "did not verify" in warn.detail
        contact = bob.contact(b_alice)
        assert contact.verified is False and contact.state == "accepted"
        await alice.send(a_bob, "still fine")
        assert (await wait_for(bob, MessageReceived)).message.text == "still fine"
