"""The encrypted history file against an attacker who can edit it (issue 20, finding 3).

Every test runs on real files: a FileKeystore (Argon2id at its minimum cost) and the history
file beside it. The attacker edits the history file between two runs of the client; the
keystore is the anchor it cannot roll back (protocol.md §23.4, §18).
"""

from __future__ import annotations

import hmac
import os
import shutil
import struct
from pathlib import Path

import msgpack
import nacl.pwhash.argon2id as argon2id
import pytest

from clientlib.client.history import CorruptHistory, EncryptedFileHistory
from clientlib.client.types import StoredMessage
from clientlib.crypto.primitives import aead_decrypt, aead_encrypt
from clientlib.errors import DecryptionError
from clientlib.keystore import FileKeystore

PASS = b"correct horse battery staple"
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
HEADER = 8 + 16


def msg(i: int, contact: str = "c1", direction: str = "in") -> StoredMessage:
    return StoredMessage(contact, f"{i:032x}", direction, f"text {i}", i, i, "received")


def frames(data: bytes) -> list[bytes]:
    """The file's records, each with its 4-byte length prefix."""
    out, pos = [], HEADER
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos : pos + 4 + n])
        pos += 4 + n
    return out


class Run:
    """One run of a client: open the keystore and the history, do things, save, close."""

    def __init__(self, tmp: Path) -> None:
        self.ks_path, self.path = tmp / "ks", tmp / "ks.history"
        if not self.ks_path.exists():
            FileKeystore.create(self.ks_path, PASS, rng=os.urandom, **FAST).close()

    def __enter__(self) -> EncryptedFileHistory:
        self.ks = FileKeystore.open(self.ks_path, PASS, rng=os.urandom)
        try:
            self.h = EncryptedFileHistory(self.path, self.ks, rng=os.urandom)
        except BaseException:
            self.ks.close()
            raise
        return self.h

    def __exit__(self, *exc: object) -> None:
        self.ks.save()  # what the client does after every message
        self.h.close()
        self.ks.close()

    def open_fails(self, match: str) -> None:
        before = self.path.read_bytes()
        with pytest.raises(CorruptHistory, match=match), self:
            pass
        assert self.path.read_bytes() == before  # a refused open changes nothing


@pytest.fixture
def run(tmp_path: Path) -> Run:
    r = Run(tmp_path)
    with r as h:
        h.add([msg(1), msg(2, "c2")])
        h.add([msg(3)])
        h.set_state("c1", f"{3:032x}", "received")
        h.add([msg(4, "c2"), msg(5)])
    return r


def texts(h: EncryptedFileHistory, contact: str) -> list[str]:
    return [m.text for m in h.messages(contact)]


def test_clean_reopen(run: Run) -> None:
    with run as h:
        assert texts(h, "c1") == ["text 1", "text 3", "text 5"]
        assert texts(h, "c2") == ["text 2", "text 4"]


def test_truncating_the_last_record_is_detected(run: Run) -> None:
    data = run.path.read_bytes()
    last = frames(data)[-1]
    run.path.write_bytes(data[: -len(last)])
    run.open_fails("truncated")


def test_cutting_the_whole_file_or_deleting_it_is_detected(run: Run) -> None:
    data = run.path.read_bytes()
    run.path.write_bytes(data[:HEADER])
    run.open_fails("truncated")
    run.path.unlink()
    with pytest.raises(CorruptHistory, match="missing"), run:
        pass


def test_dropping_a_record_is_detected(run: Run) -> None:
    data = run.path.read_bytes()
    f = frames(data)
    run.path.write_bytes(data[:HEADER] + b"".join(f[:1] + f[2:]))
    run.open_fails("dropped")


def test_reordering_two_records_is_detected(run: Run) -> None:
    data = run.path.read_bytes()
    f = frames(data)
    f[1], f[2] = f[2], f[1]
    run.path.write_bytes(data[:HEADER] + b"".join(f))
    run.open_fails("reordered")


def test_splicing_an_older_copy_is_detected(run: Run) -> None:
    old = run.path.read_bytes()
    with run as h:
        h.add([msg(6)])
    run.path.write_bytes(old)  # an older copy of the same file: a prefix of the chain
    run.open_fails("truncated")


def test_splicing_the_file_from_before_a_deletion_is_detected(run: Run) -> None:
    before = run.path.read_bytes()
    with run as h:
        h.forget("c2")
    run.path.write_bytes(before)
    run.open_fails("not the one this keystore knows")


def test_forget_shreds_the_conversation(run: Run) -> None:
    """After forget (remove_contact), the file holds no record of the conversation and no
    key still held decrypts anything of it; the destroyed key decrypts nothing new."""
    before = run.path.read_bytes()
    with run as h:
        old_key_entry = run.ks.get("history-keys", b"c2")
        assert old_key_entry is not None
        key_id, old_key = old_key_entry[:16], old_key_entry[16:]
        mac = run.ks.get("meta", b"history-key")
        assert mac is not None
        c2_frames = [f for f in frames(before) if f[4:20] == key_id]
        assert len(c2_frames) == 2
        h.forget("c2")
        assert h.messages("c2") == []
    after = run.path.read_bytes()
    for f in c2_frames:
        assert f[4:] not in after and f[20:] not in after
    assert key_id not in after
    with run as h:
        assert texts(h, "c1") == ["text 1", "text 3", "text 5"]
        assert h.messages("c2") == []
        live = {v[:16]: v[16:] for _, v in run.ks.items("history-keys")}
        new_mac = run.ks.get("meta", b"history-key")
        assert new_mac is not None
        # Every record of the new file opens with a key still held, and none is c2's.
        pts = decrypt_all(run.path.read_bytes(), new_mac, live)
        assert all(pt is not None for pt in pts)
        assert {msgpack.unpackb(pt)[1] for pt in pts if pt is not None} == {"c1"}
        # The keystore on disk no longer holds the key anywhere.
        held = [v for ns in ("history-keys", "history", "meta") for _, v in run.ks.items(ns)]
        assert all(old_key not in v for v in held)
        assert run.ks.get("history-keys", b"c2") is None
    # The destroyed key opens none of the records of the new file (every key id, nonce, AD).
    raw = run.path.read_bytes()
    for f in frames(raw):
        blob = f[4:]
        for ad in (b"", f[:HEADER]):
            with pytest.raises(DecryptionError):
                aead_decrypt(old_key, blob[16:40], blob[40:], ad)
    # ...while it did open the old records (re-deriving the documented chain on our own):
    # the check above is meaningful.
    opened = [
        msgpack.unpackb(pt)[4]
        for pt in decrypt_all(before, mac, {key_id: old_key})
        if pt is not None
    ]
    assert opened == ["text 2", "text 4"]


def decrypt_all(data: bytes, mac: bytes, keys: dict[bytes, bytes]) -> list[bytes | None]:
    """protocol.md §23.4 independently: AD_i = label || epoch || u64(i) || c_i || key id,
    c_0 = HMAC(m, chain label || epoch), c_{i+1} = HMAC(m, c_i || u64(i) || record_i)."""
    epoch = data[8:HEADER]
    chain = hmac.new(mac, b"blindrelay/v1/history-chain\x00" + epoch, "sha256").digest()
    out: list[bytes | None] = []
    for i, f in enumerate(frames(data)):
        blob = f[4:]
        key = keys.get(blob[:16])
        ad = b"blindrelay/v1/history-record\x00" + epoch + struct.pack(">Q", i) + chain + blob[:16]
        out.append(None if key is None else aead_decrypt(key, blob[16:40], blob[40:], ad))
        chain = hmac.new(mac, chain + struct.pack(">Q", i) + blob, "sha256").digest()
    return out


def test_a_crash_after_append_before_keystore_save_keeps_the_tail(tmp_path: Path) -> None:
    r = Run(tmp_path)
    with r as h:
        h.add([msg(1)])
    ks = FileKeystore.open(r.ks_path, PASS, rng=os.urandom)
    h = EncryptedFileHistory(r.path, ks, rng=os.urandom)
    h.add([msg(2), msg(3, "new")])  # written and fsynced, but the keystore is never saved
    h.close()
    ks.close()
    with r as h:  # the records past the keystore's head authenticate: kept
        assert texts(h, "c1") == ["text 1", "text 2"]
        # the new conversation's key was never saved: its record is cut off, like a torn write
        assert texts(h, "new") == []
    with r as h:
        assert texts(h, "c1") == ["text 1", "text 2"]


def test_a_torn_uncommitted_tail_is_cut(tmp_path: Path) -> None:
    r = Run(tmp_path)
    with r as h:
        h.add([msg(1)])
    ks = FileKeystore.open(r.ks_path, PASS, rng=os.urandom)
    h = EncryptedFileHistory(r.path, ks, rng=os.urandom)
    h.add([msg(2)])
    h.close()
    ks.close()
    data = r.path.read_bytes()
    r.path.write_bytes(data[:-5])  # power cut in the middle of the append
    with r as h:
        assert texts(h, "c1") == ["text 1"]
        h.add([msg(3)])
    with r as h:
        assert texts(h, "c1") == ["text 1", "text 3"]


def test_interrupted_compaction_is_finished_or_dropped(run: Run) -> None:
    # Crash after the keystore committed the compaction, before the rename.
    before = run.path.read_bytes()
    with run as h:
        h.forget("c2")
    compacted = run.path.read_bytes()
    run.path.write_bytes(before)
    (run.path.parent / "ks.history.compact").write_bytes(compacted)
    with run as h:
        assert texts(h, "c1") == ["text 1", "text 3", "text 5"] and texts(h, "c2") == []
    assert run.path.read_bytes() == compacted
    assert not (run.path.parent / "ks.history.compact").exists()
    # Crash before the commit: a compaction file the keystore never heard of is dropped.
    junk = compacted[:8] + os.urandom(16) + compacted[HEADER:]
    (run.path.parent / "ks.history.compact").write_bytes(junk)
    with run as h:
        assert texts(h, "c1") == ["text 1", "text 3", "text 5"]
    assert not (run.path.parent / "ks.history.compact").exists()


def test_version_1_files_are_migrated_and_their_key_destroyed(tmp_path: Path) -> None:
    r = Run(tmp_path)
    legacy = os.urandom(32)
    ks = FileKeystore.open(r.ks_path, PASS, rng=os.urandom)
    ks.put("meta", b"history-key", legacy)
    ks.save()
    ks.close()
    v1 = bytearray(b"BRHIST\x00\x01")
    recs: list[list[object]] = [
        [0, "c1", f"{1:032x}", "in", "old 1", 1, 1, "received"],
        [0, "c9", f"{2:032x}", "in", "forgotten", 2, 2, "received"],
        [0, "c1", f"{3:032x}", "out", "old 3", 3, 3, "queued"],
        [1, "c1", f"{3:032x}", "sent"],
        [2, "c9"],
    ]
    for rec in recs:
        nonce = os.urandom(24)
        blob = nonce + aead_encrypt(legacy, nonce, msgpack.packb(rec), b"blindrelay/v1/history\x00")
        v1 += struct.pack(">I", len(blob)) + blob
    r.path.write_bytes(bytes(v1))
    shutil.copy(r.path, tmp_path / "v1-copy")
    with r as h:
        assert [(m.text, m.state) for m in h.messages("c1")] == [
            ("old 1", "received"),
            ("old 3", "sent"),
        ]
        assert h.messages("c9") == []
        assert run_key(r) != legacy
    data = r.path.read_bytes()
    assert data.startswith(b"BRHIST\x00\x02") and len(frames(data)) == 2
    with r as h:  # a version-2 file now, anchored in the keystore
        assert texts(h, "c1") == ["old 1", "old 3"]
        held = [v for ns in ("history-keys", "history", "meta") for _, v in r.ks.items(ns)]
        assert all(legacy not in v for v in held)  # the old copy no longer decrypts
    r.path.write_bytes(data[: -len(frames(data)[-1])])
    r.open_fails("truncated")


def run_key(r: Run) -> bytes | None:
    return r.ks.get("meta", b"history-key")


def test_reset_starts_over(run: Run) -> None:
    data = run.path.read_bytes()
    run.path.write_bytes(data[: -len(frames(data)[-1])])
    run.open_fails("truncated")
    ks = FileKeystore.open(run.ks_path, PASS, rng=os.urandom)
    EncryptedFileHistory.reset(run.path, ks)
    ks.close()
    assert not run.path.exists()
    with run as h:
        assert h.messages("c1") == [] and h.messages("c2") == []
        h.add([msg(9)])
    with run as h:
        assert texts(h, "c1") == ["text 9"]


def test_a_history_of_another_keystore_is_refused(run: Run, tmp_path: Path) -> None:
    (tmp_path / "o").mkdir()
    other = Run(tmp_path / "o")
    shutil.copy(run.path, other.path)
    other.open_fails("does not belong")
