"""clientlib.client building blocks that need no relay: content codec, invitations and hosted
bundles, keystore records, and the history stores."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from clientlib.client.content import (
    MAX_TEXT_BYTES,
    Accept,
    ContactRequestContent,
    TextMessage,
    decode_content,
)
from clientlib.client.history import CorruptHistory, EncryptedFileHistory, MemoryHistory
from clientlib.client.invite import (
    InvalidInvitation,
    Invitation,
    open_bundle,
    seal_item,
    seal_static,
)
from clientlib.client.state import ContactRecord, OutboxRecord, remember
from clientlib.client.types import StoredMessage
from clientlib.crypto import IdentityKeyPair, PreKeyKind, PreKeyPair
from clientlib.errors import KeyValidationError, WireError
from clientlib.keystore import CorruptKeystore, InMemoryKeystore
from clientlib.session import initiate

SID = bytes(range(16))
KEY = bytes(range(32, 64))


# --- content -------------------------------------------------------------------------------


def test_content_round_trips() -> None:
    for c in (
        ContactRequestContent(reply=SID, cap=KEY, name="Alex", intro="hi, we met at the meetup"),
        ContactRequestContent(reply=SID, cap=KEY),
        Accept(reply=SID, cap=KEY, name="Sam"),
        TextMessage(id=b"\x01" * 16, ts=1_700_000_000, text="hello ✓"),
    ):
        assert decode_content(c.encode()) == c


def test_content_repr_hides_text() -> None:
    m = TextMessage(id=b"\x01" * 16, ts=1, text="very private words")
    assert "private" not in repr(m)
    assert "meetup" not in repr(ContactRequestContent(reply=SID, cap=KEY, intro="meetup"))


@pytest.mark.parametrize(
    "fields",
    [
        {"t": "nope"},
        {"t": "msg", "id": b"\x01" * 16, "ts": 1},  # missing text
        {"t": "msg", "id": b"\x01" * 15, "ts": 1, "text": "x"},  # short id
        {"t": "msg", "id": b"\x01" * 16, "ts": 1, "text": b"x"},  # bytes for text
        {"t": "msg", "id": b"\x01" * 16, "ts": 1, "text": "x", "extra": 1},  # unknown field
        {"t": "msg", "id": b"\x01" * 16, "ts": 1, "text": "a\x00b"},  # NUL
        {"t": "msg", "id": b"\x01" * 16, "ts": 1, "text": "x" * (MAX_TEXT_BYTES + 1)},
        {"t": "req", "reply": SID, "name": "n" * 65},
        {"t": "acc"},
    ],
)
def test_content_rejects_malformed(fields: dict[str, object]) -> None:
    with pytest.raises(WireError):
        decode_content(b"\x01" + msgpack.packb(fields, use_bin_type=True))


def test_content_rejects_other_versions() -> None:
    data = TextMessage(id=b"\x01" * 16, ts=1, text="x").encode()
    with pytest.raises(WireError):
        decode_content(b"\x02" + data[1:])


# --- invitations and hosted bundles --------------------------------------------------------


def test_invitation_link_round_trip() -> None:
    inv = Invitation("https://relay.example.org", SID, KEY)
    link = inv.link
    assert link.startswith("https://relay.example.org/v1/invite#")
    assert Invitation.parse(link) == inv
    assert Invitation.parse("  " + link + "\n") == inv
    assert inv.qr_payload == link.encode()
    assert KEY.hex() not in repr(inv) and SID.hex() not in repr(inv)


@pytest.mark.parametrize(
    "link",
    [
        "",
        "hello",
        "https://relay.example.org/v1/invite",
        "https://relay.example.org/v1/other#AQ",
        "ftp://relay.example.org/v1/invite#" + "A" * 66,
        "https://relay.example.org/v1/invite#!!!",
        "https://relay.example.org/v1/invite#AQID",  # too short
    ],
)
def test_invitation_rejects_garbage(link: str) -> None:
    with pytest.raises(InvalidInvitation):
        Invitation.parse(link)


def test_invitation_rejects_unknown_version() -> None:
    link = Invitation("http://127.0.0.1:7480", SID, KEY).link
    base, token = link.split("#")
    import base64

    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[0] = 2
    bad = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(InvalidInvitation):
        Invitation.parse(base + "#" + bad)


def _owner_material() -> tuple[IdentityKeyPair, PreKeyPair, PreKeyPair, PreKeyPair, PreKeyPair]:
    ik = IdentityKeyPair.generate(os.urandom)
    spk = PreKeyPair.generate(ik, PreKeyKind.X25519_SIGNED, 1, os.urandom)
    lr = PreKeyPair.generate(ik, PreKeyKind.MLKEM_LAST_RESORT, 2, os.urandom)
    kem = PreKeyPair.generate(ik, PreKeyKind.MLKEM_ONE_TIME, 3, os.urandom)
    opk = PreKeyPair.generate(ik, PreKeyKind.X25519_ONE_TIME, 3, os.urandom)
    return ik, spk, lr, kem, opk


def test_hosted_bundle_opens_only_with_the_invitation() -> None:
    ik, spk, lr, kem, opk = _owner_material()
    inv = Invitation("http://127.0.0.1:7480", SID, KEY)
    static = seal_static(KEY, SID, ik.public, spk.public_record, lr.public_record, os.urandom)
    item = seal_item(KEY, SID, kem.public_record, opk.public_record, os.urandom)
    # The relay stores these: no identity key and no prekey in the clear.
    for blob in (static, item):
        assert bytes(ik.public) not in blob
        assert bytes(spk.public_record.public) not in blob
    full = open_bundle(inv, static, item)
    assert full.identity == ik.public
    assert full.kem_prekey.kind is PreKeyKind.MLKEM_ONE_TIME
    assert full.one_time_prekey is not None
    fallback = open_bundle(inv, static, None)
    assert fallback.kem_prekey.kind is PreKeyKind.MLKEM_LAST_RESORT
    assert fallback.one_time_prekey is None
    # A bundle from it starts a real session.
    alice = IdentityKeyPair.generate(os.urandom)
    _session, sealed = initiate(alice, full, b"hello", rng=os.urandom, now=1)
    assert len(sealed.ct) >= 2048


def test_hosted_bundle_rejects_swaps_and_tampering() -> None:
    ik, spk, lr, kem, opk = _owner_material()
    inv = Invitation("http://127.0.0.1:7480", SID, KEY)
    static = seal_static(KEY, SID, ik.public, spk.public_record, lr.public_record, os.urandom)
    item = seal_item(KEY, SID, kem.public_record, opk.public_record, os.urandom)
    other_sid = Invitation("http://127.0.0.1:7480", bytes(16), KEY)
    other_key = Invitation("http://127.0.0.1:7480", SID, bytes(32))
    with pytest.raises(KeyValidationError):
        open_bundle(other_sid, static, item)  # blobs bound to their address
    with pytest.raises(KeyValidationError):
        open_bundle(other_key, static, item)
    with pytest.raises(KeyValidationError):
        open_bundle(inv, item, static)  # static and item are not interchangeable
    flipped = bytearray(static)
    flipped[40] ^= 1
    with pytest.raises(KeyValidationError):
        open_bundle(inv, bytes(flipped), item)
    # Keys of someone else, sealed under the right key, fail the signature check.
    _ik2, spk2, lr2, _, _ = _owner_material()
    forged = seal_static(KEY, SID, ik.public, spk2.public_record, lr2.public_record, os.urandom)
    with pytest.raises(KeyValidationError):
        open_bundle(inv, forged, None)


# --- keystore records ----------------------------------------------------------------------


def test_records_round_trip_and_reject_damage() -> None:
    rec = ContactRecord(
        name="Sam",
        state="accepted",
        identity=b"\x01" * 32,
        session=b"s" * 100,
        rid=b"\x02" * 16,
        sid=b"\x03" * 16,
        owner=b"\x04" * 32,
        send=None,
    )
    again = ContactRecord.from_bytes(rec.to_bytes())
    assert again.to_bytes() == rec.to_bytes()
    assert "Sam" not in repr(rec)
    with pytest.raises(CorruptKeystore):
        ContactRecord.from_bytes(b"\x09" + rec.to_bytes()[1:])
    with pytest.raises(CorruptKeystore):
        ContactRecord.from_bytes(rec.to_bytes()[:-3])
    with pytest.raises(CorruptKeystore):
        OutboxRecord.from_bytes(rec.to_bytes())  # unknown fields for this record


def test_remember_is_bounded() -> None:
    seen: list[bytes] = []
    for i in range(10):
        remember(seen, bytes([i]), limit=4)
    assert seen == [bytes([i]) for i in range(6, 10)]


# --- history -------------------------------------------------------------------------------


def _msg(i: int, direction: str = "in", contact: str = "c1") -> StoredMessage:
    return StoredMessage(contact, f"{i:032x}", direction, f"text {i}", i, i, "received")  # type: ignore[arg-type]


def test_memory_history_dedupes() -> None:
    h = MemoryHistory()
    assert h.add([_msg(1), _msg(2)]) == [True, True]
    assert h.add([_msg(2), _msg(3)]) == [False, True]
    assert [m.text for m in h.messages("c1")] == ["text 1", "text 2", "text 3"]
    assert [m.text for m in h.messages("c1", limit=1)] == ["text 3"]


def test_encrypted_history_persists_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "h"
    key = InMemoryKeystore()
    h = EncryptedFileHistory(path, key, rng=os.urandom)
    h.add([_msg(1), _msg(2, "out")])
    h.set_state("c1", f"{2:032x}", "sent")
    h.add([_msg(1)])  # duplicate: not written again
    h.add([_msg(7, contact="c2")])
    h.forget("c2")
    h.close()
    data = path.read_bytes()
    assert b"text 1" not in data and b"text 2" not in data
    h2 = EncryptedFileHistory(path, key, rng=os.urandom)
    msgs = h2.messages("c1")
    assert [(m.text, m.state) for m in msgs] == [("text 1", "received"), ("text 2", "sent")]
    assert h2.messages("c2") == []
    h2.close()


def test_encrypted_history_cuts_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "h"
    key = InMemoryKeystore()
    h = EncryptedFileHistory(path, key, rng=os.urandom)
    h.add([_msg(1)])
    committed = key.get("history", b"head")  # the keystore as last saved, before the crash
    h.add([_msg(2)])
    h.close()
    full = path.read_bytes()
    path.write_bytes(full[:-5])  # crash in the middle of the last append
    key.put("history", b"head", committed or b"")  # (the keystore was not saved after it)
    h2 = EncryptedFileHistory(path, key, rng=os.urandom)
    assert [m.text for m in h2.messages("c1")] == ["text 1"]
    h2.add([_msg(3)])
    h2.close()
    h3 = EncryptedFileHistory(path, key, rng=os.urandom)
    assert [m.text for m in h3.messages("c1")] == ["text 1", "text 3"]
    h3.close()


def test_encrypted_history_refuses_wrong_key_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "h"
    key = InMemoryKeystore()
    h = EncryptedFileHistory(path, key, rng=os.urandom)
    h.add([_msg(1), _msg(2)])
    h.add([_msg(3)])
    h.close()
    before = path.read_bytes()
    with pytest.raises(CorruptHistory):
        EncryptedFileHistory(path, InMemoryKeystore(), rng=os.urandom)
    damaged = bytearray(before)
    damaged[20] ^= 0x40
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptHistory):
        EncryptedFileHistory(path, key, rng=os.urandom)
    assert path.read_bytes() == bytes(damaged)  # a refused open changes nothing
    path.write_bytes(b"not a history file")
    with pytest.raises(CorruptHistory):
        EncryptedFileHistory(path, key, rng=os.urandom)


def test_encrypted_history_wipe(tmp_path: Path) -> None:
    path = tmp_path / "h"
    h = EncryptedFileHistory(path, InMemoryKeystore(), rng=os.urandom)
    h.add([_msg(1)])
    h.wipe()
    assert not path.exists()
