"""Disappearing messages, unsend and forget in the encrypted history file (issue 13): a
message's own key is destroyed at expiry, so the file with everything the keystore still
holds never yields it again, before and after compaction; patches of such a message go under
its key; compaction re-keys everything, so a copy of the old file decrypts under nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nacl.pwhash.argon2id as argon2id

from clientlib.client.history import SHRED_COMPACT_AT, EncryptedFileHistory
from clientlib.client.types import StoredMessage
from clientlib.keystore import FileKeystore

PASS = b"correct horse battery staple"
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
NEEDLE = "needle-7f3a9c disappearing text"


def keystore_bytes(ks: FileKeystore) -> bytes:
    """Every namespace, key and value the opened keystore holds, for needle scans."""
    snap = ks._table.snapshot()
    return b"".join(ns.encode() + k + v for ns, entries in snap.items() for k, v in entries.items())


class Store:
    def __init__(self, tmp: Path) -> None:
        self.ks_path, self.path = tmp / "ks", tmp / "ks.history"
        FileKeystore.create(self.ks_path, PASS, rng=os.urandom, **FAST).close()

    def open(self) -> tuple[FileKeystore, EncryptedFileHistory]:
        ks = FileKeystore.open(self.ks_path, PASS, rng=os.urandom)
        return ks, EncryptedFileHistory(self.path, ks, rng=os.urandom)


def dm(i: int, *, timer: int = 0, expires: int | None = None, text: str = "") -> StoredMessage:
    return StoredMessage(
        "c1", f"{i:032x}", "out", text or f"text {i}", i, i, "sent", None, timer, expires
    )


def plaintexts(store: Store) -> list[str]:
    """Everything the history yields when opened with the keystore as it now is."""
    ks, h = store.open()
    try:
        return [m.text for m in h.messages("c1")]
    finally:
        h.close()
        ks.close()


def test_expired_message_is_gone_before_and_after_compaction(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ks, h = store.open()
    h.add([dm(1, timer=5, expires=15, text=NEEDLE), dm(2)])
    h.update("c1", "out", f"{1:032x}", {"text": NEEDLE + " edited", "ed": 12})
    ks.save()
    raw_keys = {k for k, _ in ks.items("history-msgkeys")}
    (destroyed,) = [v[:32] for _, v in ks.items("history-msgkeys")]
    assert len(raw_keys) == 1
    before = store.path.read_bytes()
    assert [m.id for m in h.expire(20)] == [f"{1:032x}"]
    assert h.next_expiry() is None
    # Right after expiry (no compaction yet): the key is destroyed, the records remain.
    assert store.path.read_bytes() == before
    assert list(ks.items("history-msgkeys")) == []
    assert {k for k, _ in ks.items("history-shredded")} == raw_keys
    held = keystore_bytes(ks)
    assert destroyed not in held and NEEDLE.encode() not in held
    h.close()
    ks.close()
    # Opening with what the keystore holds yields only the other message, and compacts.
    assert plaintexts(store) == ["text 2"]
    ks = FileKeystore.open(store.ks_path, PASS, rng=os.urandom)
    assert list(ks.items("history-shredded")) == []
    assert NEEDLE.encode() not in store.path.read_bytes()
    ks.close()


def test_compaction_rekeys_so_an_old_file_copy_is_dead(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ks, h = store.open()
    h.add([dm(1, text=NEEDLE), dm(2)])
    ks.save()
    shutil.copy(store.path, tmp_path / "old-copy")
    old_keys = {v for _, v in ks.items("history-keys")}
    h.update("c1", "out", f"{1:032x}", {"dl": 1}, shred=True)  # unsend
    new_keys = {v for _, v in ks.items("history-keys")}
    assert old_keys and not (old_keys & new_keys)
    m = h.get("c1", "out", f"{1:032x}")
    assert m is not None and m.deleted and m.text == ""
    h.close()
    ks.close()
    assert plaintexts(store) == ["", "text 2"]
    # The old copy, put back, decrypts under nothing the keystore holds: refused.
    shutil.copy(tmp_path / "old-copy", store.path)
    ks = FileKeystore.open(store.ks_path, PASS, rng=os.urandom)
    try:
        EncryptedFileHistory(store.path, ks, rng=os.urandom)
    except Exception as exc:  # CorruptHistory: another epoch
        assert type(exc).__name__ == "CorruptHistory"
    else:
        raise AssertionError("an old file copy was accepted")
    finally:
        ks.close()


def test_patches_and_states_survive_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ks, h = store.open()
    h.add([dm(1, timer=60), dm(2)])
    h.update("c1", "out", f"{1:032x}", {"rx": ["peer", "👍"]})
    h.update("c1", "out", f"{2:032x}", {"text": "edited", "ed": 9})
    h.set_state("c1", f"{1:032x}", "read")
    h.update("c1", "out", f"{2:032x}", {"ex": 1000})
    ks.save()
    h.close()
    ks.close()
    ks, h = store.open()
    one, two = h.messages("c1")
    assert one.reactions == (("peer", "👍"),) and one.state == "read" and one.timer == 60
    assert two.text == "edited" and two.edited_at == 9 and two.expires_at == 1000
    assert h.next_expiry() == 1000
    h.close()
    ks.close()


def test_many_expiries_compact_by_themselves(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ks, h = store.open()
    n = SHRED_COMPACT_AT
    h.add([dm(i, timer=1, expires=i) for i in range(1, n + 1)])
    ks.save()
    size = store.path.stat().st_size
    for t in range(1, n + 1):
        h.expire(t)
    assert list(ks.items("history-shredded")) == []
    assert store.path.stat().st_size < size // 10
    assert h.messages("c1") == []
    h.close()
    ks.close()
