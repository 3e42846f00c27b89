"""Encrypted backup and restore through the real client and a live relay (issue 15,
protocol.md §24.3-§24.4): the restored identity reaches its contacts again through session
offers, both sides see "safety number unchanged, new session", and bad backups change
nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import (
    Client,
    ClientWarning,
    CorruptBackup,
    MessageReceived,
    SessionRenewed,
    WrongRecoveryKey,
)
from clientlib.client.backup import open_backup, recovery_key_from_words
from clientlib.client.state import OutboxRecord

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

PASS = "pw-alice2 long test passphrase"


async def test_backup_restore_talks_to_contacts_again(tmp_path: Path, relay: str) -> None:
    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    backup = tmp_path / "alice.backup"
    async with bob:
        async with alice:
            b_alice, a_bob = await befriend(bob, alice)
            await bob.mark_verified(b_alice)
            await alice.set_privacy(a_bob, typing=False)
            await alice.send(a_bob, "before the loss")
            await wait_for(bob, MessageReceived)
            words = await alice.backup(backup)
            with pytest.raises(FileExistsError):
                await alice.backup(backup)
            identity = alice.identity
            sn = alice.safety_number(a_bob)
        assert len(words.split()) == 24
        assert b"bob" not in backup.read_bytes()  # encrypted
        # The machine is lost: restore on a fresh one (a new directory).
        fresh = tmp_path / "new-machine"
        fresh.mkdir()
        offline = replace(FAST, connect=False)
        restored = Client.restore(backup, words, fresh / "alice.keystore", PASS, config=offline)
        async with restored:
            assert restored.identity == identity
            [c] = restored.contacts()
            assert c.id == a_bob and c.name == "bob" and c.safety_number == sn
            assert c.settings.typing is False
            assert restored.messages(a_bob) == []  # no history in a backup
            early = await restored.send(a_bob, "written before the new session")
            [offer] = [
                OutboxRecord.from_bytes(v)
                for _, v in restored._book.ks.items("outbox")
                if OutboxRecord.from_bytes(v).pt is None
            ]
        async with Client.open(fresh / "alice.keystore", PASS, config=FAST) as restored:
            renewed = await wait_for(bob, SessionRenewed)
            assert renewed.contact.id == b_alice
            assert renewed.contact.verified  # the same identity: still verified
            assert renewed.contact.safety_number == sn
            await wait_for(restored, SessionRenewed)
            got = await wait_for(bob, MessageReceived)
            assert got.message.text == "written before the new session"
            assert got.message.id == early.id
            await bob.send(b_alice, "welcome back")
            back = await wait_for(restored, MessageReceived)
            assert back.message.text == "welcome back"
            # The relay replays the offer (a new envelope id): nothing changes.
            assert offer.sid is not None
            await restored._link.depositor().deposit(
                offer.sid, offer.ct, eid=bytes(16), cap=offer.cap
            )
            warn = await wait_for(bob, ClientWarning, lambda w: w.kind == "duplicate_request")
            assert "replayed session offer" in warn.detail
            await restored.send(a_bob, "and again")
            assert (await wait_for(bob, MessageReceived)).message.text == "and again"
            await bob.send(b_alice, "still one session")
            assert (await wait_for(restored, MessageReceived)).message.text == "still one session"


async def test_bad_backups_are_refused_and_change_nothing(tmp_path: Path, relay: str) -> None:
    alice = make(tmp_path, "alice", relay)
    backup = tmp_path / "alice.backup"
    async with alice:
        words = await alice.backup(backup)
        other_words = await alice.backup(tmp_path / "other.backup")
    data = backup.read_bytes()
    key = recovery_key_from_words(words)
    assert open_backup(data, key).seed  # the genuine file opens
    target = tmp_path / "x" / "alice.keystore"
    target.parent.mkdir()

    def restore(path: Path, w: str) -> None:
        Client.restore(path, w, target, PASS, config=FAST)

    with pytest.raises(WrongRecoveryKey):
        restore(backup, other_words)  # another backup's key
    flipped = bytearray(data)
    flipped[100] ^= 1
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(WrongRecoveryKey):
        restore(tmp_path / "flipped", words)  # altered
    (tmp_path / "short").write_bytes(data[:-1])
    with pytest.raises(CorruptBackup):
        restore(tmp_path / "short", words)  # truncated
    (tmp_path / "text").write_bytes(b"not a backup at all")
    with pytest.raises(CorruptBackup):
        restore(tmp_path / "text", words)
    newer = bytearray(data)
    newer[8] = 2
    (tmp_path / "newer").write_bytes(bytes(newer))
    with pytest.raises(CorruptBackup):
        restore(tmp_path / "newer", words)
    from mnemonic import Mnemonic

    w = words.split()
    m = Mnemonic("english")
    w[-1] = next(x for x in m.wordlist if not m.check(" ".join([*w[:-1], x])))
    with pytest.raises(WrongRecoveryKey):
        restore(backup, " ".join(w))  # a mistyped word: the checksum catches it
    w[-1] = "notaword"
    with pytest.raises(WrongRecoveryKey):
        restore(backup, " ".join(w))
    with pytest.raises(WrongRecoveryKey):
        restore(backup, " ".join(words.split()[:23]))
    assert list(target.parent.iterdir()) == []  # nothing was created


async def test_a_restored_group_receives_and_sends_again(tmp_path: Path, relay: str) -> None:
    """protocol.md §24.3 body version 2: an active group is in the backup; the restored
    client reads what members sent after the backup (their receiver chains are restored)
    and, after distributing a new sender chain of its own, is read by them."""
    from clientlib.client.types import GroupEvent

    def msg(text: str):  # type: ignore[no-untyped-def]
        return lambda e: e.kind == "message" and e.text == text

    alice, bob = make(tmp_path, "alice", relay), make(tmp_path, "bob", relay)
    backup = tmp_path / "alice.backup"
    async with bob:
        async with alice:
            _, a_bob = await befriend(bob, alice)
            await alice.create_group("club")
            await alice.invite_to_group("club", a_bob)
            inv = await wait_for(bob, GroupEvent, lambda e: e.kind == "invited")
            assert inv.invite_id is not None
            await bob.accept_group(inv.invite_id)
            await wait_for(bob, GroupEvent, lambda e: e.kind == "joined")
            await alice.send_group("club", "before the backup")
            await wait_for(bob, GroupEvent, msg("before the backup"))
            await bob.send_group("club", "bob before the backup")
            await wait_for(alice, GroupEvent, msg("bob before the backup"))
            words = await alice.backup(backup)
            contents = open_backup(backup.read_bytes(), recovery_key_from_words(words))
            [g] = contents.groups
            assert g.name == "alice" and g.ngen == 1 and len(g.peers) == 1
        # Alice's machine is lost; Bob keeps writing to the group.
        await bob.send_group("club", "while alice is away")
        fresh = tmp_path / "new-machine"
        fresh.mkdir()
        restored = Client.restore(backup, words, fresh / "alice.keystore", PASS, config=FAST)
        async with restored:
            [info] = restored.groups()
            assert info.name == "club" and info.status == "active" and info.members == 2
            assert restored.group_messages("club") == []  # no history in a backup
            got = await wait_for(restored, GroupEvent, msg("while alice is away"))
            assert got.member == "bob"
            # Our new sender chain reaches Bob first; until it is sent we may not post.
            await restored._groups.settle()  # type: ignore[attr-defined]
            gid = bytes.fromhex(info.id)
            for _ in range(50):
                if restored._groups.live[gid].rec.resume < 0:  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.1)
            await restored.send_group("club", "alice is back")
            back = await wait_for(bob, GroupEvent, msg("alice is back"))
            assert back.member == "alice"
            await bob.send_group("club", "welcome back")
            await wait_for(restored, GroupEvent, msg("welcome back"))
