"""Devices and recovery vectors (``tests/vectors/devices-v1.json``, protocol.md §24.3-§24.6).

The backup file is checked through the client (``clientlib.client.backup``) and re-derived
from protocol.md alone (``cryptography``'s HKDF, libsodium's XChaCha20-Poly1305 through
PyNaCl, ``msgpack``, the BIP-39 word list of ``mnemonic``). The session offer is checked
through the client and its inner layout parsed from §24.4 by hand; the device list and the
linking transcript are re-derived with libsodium (Ed25519, X25519, XChaCha20-Poly1305) and
``cryptography``'s HKDF. Every tampering fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from mnemonic import Mnemonic

from clientlib.client.backup import (
    CorruptBackup,
    WrongRecoveryKey,
    decode_body,
    open_backup,
    recovery_key_from_words,
    recovery_words,
    seal_backup,
)
from clientlib.client.devicelist import (
    MAX_DEVICES,
    DeviceList,
    InvalidDeviceList,
    LinkCode,
    LinkError,
    decode_device_part,
    decode_transfer,
    encode_device_part,
    link_keys,
    msg1,
    open_msg1,
    open_msg2,
    seal_msg2,
)
from clientlib.crypto.keys import IdentityKeyPair, X25519KeyPair
from clientlib.errors import DecryptionError, LocalProtocolError
from clientlib.session.offer import open_offer, seal_offer
from clientlib.session.sealed import unseal

V = json.loads((Path(__file__).parents[1] / "vectors" / "devices-v1.json").read_text())[
    "devices-v1"
]
B, OF = V["backup"], V["offer"]


def x(s: str) -> bytes:
    return bytes.fromhex(s)


class Replay:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        out = self.chunks.pop(0)
        assert len(out) == n
        return out


# --- the backup, from protocol.md §24.3 alone ---------------------------------------------------


def spec_words_to_key(words: str) -> bytes:
    wl = Mnemonic("english").wordlist
    bits = "".join(format(wl.index(w), "011b") for w in words.split())
    assert len(bits) == 264
    key = int(bits[:256], 2).to_bytes(32, "big")
    assert bits[256:] == format(hashlib.sha256(key).digest()[0], "08b")
    return key


def spec_open(data: bytes, key: bytes) -> dict[str, Any]:
    assert data[:8] == b"BRBACKUP" and data[8] == 1
    salt, nonce = data[9:41], data[41:65]
    k = HKDF(hashes.SHA256(), 32, salt, b"blindrelay/v1/backup").derive(key)
    p = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(data[65:], data[:65], nonce, k)
    assert len(p) % 4096 == 0
    (n,) = struct.unpack(">I", p[:4])
    assert p[4 + n :] == bytes(len(p) - 4 - n)
    body = p[4 : 4 + n]
    assert body[0] in (1, 2)  # body versions 1 and 2 (groups)
    doc: dict[str, Any] = msgpack.unpackb(body[1:], raw=False)
    return doc


def test_backup_words_and_key() -> None:
    assert spec_words_to_key(B["words"]) == x(B["recovery_key"])
    assert recovery_key_from_words(B["words"]) == x(B["recovery_key"])
    assert recovery_words(x(B["recovery_key"])) == B["words"]
    assert recovery_key_from_words("  " + B["words"].upper().replace(" ", "\n ") + " ") == x(
        B["recovery_key"]
    )


def test_backup_file_from_the_spec() -> None:
    data = x(B["file"])
    doc = spec_open(data, x(B["recovery_key"]))
    assert list(doc) == ["v", "seed", "relay", "name", "created", "bnd", "contacts", "groups"]
    assert doc["v"] == 1 and doc["seed"] == x(B["seed"]) and doc["groups"] == []
    [c] = doc["contacts"]
    assert list(c) == [
        "cid", "name", "identity", "rid", "sid", "owner", "mycap", "send", "sendcap",
        "verified", "blocked", "created", "settings", "peer", "dis", "disv",
    ]  # fmt: skip
    assert c["cid"] == x(B["contact"]["cid"]) and c["owner"] == x(B["contact"]["owner"])
    assert b"\x01" + msgpack.packb(doc, use_bin_type=True) == x(B["body"])


def test_backup_file_through_the_client() -> None:
    data = x(B["file"])
    got = open_backup(data, x(B["recovery_key"]))
    assert got.seed == x(B["seed"]) and got.name == "alice"
    assert got.contacts[0].identity == x(B["contact"]["identity"])
    again = seal_backup(
        got, x(B["recovery_key"]), Replay([x(B["salt"]), x(B["nonce"])]), body_version=1
    )
    assert again == data  # a backup written before groups (body version 1) still opens
    assert decode_body(x(B["body"])).relay == "https://relay.example"


def test_backup_tampering() -> None:
    data, key = x(B["file"]), x(B["recovery_key"])
    for pos in (0, 8, 20, 50, 70, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        err = CorruptBackup if pos < 9 else WrongRecoveryKey
        with pytest.raises(err):
            open_backup(bytes(bad), key)
    with pytest.raises(CorruptBackup):
        open_backup(data[:-1], key)
    with pytest.raises(WrongRecoveryKey):
        open_backup(data + bytes(4096), key)  # the right length, but not what was sealed
    with pytest.raises(WrongRecoveryKey):
        open_backup(data, bytes(32))


def test_backup_body_strictness() -> None:
    doc = msgpack.unpackb(x(B["body"])[1:], raw=False)
    for change in (
        lambda d: d.pop("groups"),
        lambda d: d.update(extra=1),
        lambda d: d.update(seed=b"short"),
        lambda d: d.update(v=2),
        lambda d: d["contacts"][0].update(owner=b"x"),
        lambda d: d["contacts"][0].update(spy=1),
        lambda d: d["contacts"].append(dict(d["contacts"][0])),
        lambda d: d["contacts"][0].pop("send"),
    ):
        d = msgpack.unpackb(x(B["body"])[1:], raw=False)
        change(d)
        with pytest.raises(CorruptBackup):
            decode_body(b"\x01" + msgpack.packb(d, use_bin_type=True))
    assert decode_body(b"\x01" + msgpack.packb(doc, use_bin_type=True)).name == "alice"


def test_backup_v2_with_a_group_from_the_spec_and_the_client() -> None:
    """§24.3 body version 2: ``groups`` holds one map per active group, keys in order."""
    B2 = V["backup_v2"]
    data, key = x(B2["file"]), x(B2["recovery_key"])
    doc = spec_open(data, key)
    assert doc["v"] == 2 and x(B2["body"])[0] == 2
    [g] = doc["groups"]
    assert list(g) == [
        "gid", "name", "seed", "dh", "rid", "sid", "owner", "log", "es", "ese", "ngen",
        "peers", "typ",
    ]  # fmt: skip
    assert g["gid"] == x(B2["gid"]) and g["ngen"] == 1
    [chain] = g["peers"].values()
    assert chain[:3] == [0, 0, 3] and len(chain[3]) == 32 and chain[4][0][0] == 1
    assert b"\x02" + msgpack.packb(doc, use_bin_type=True) == x(B2["body"])
    got = open_backup(data, key)
    assert [gr.gid for gr in got.groups] == [x(B2["gid"])]
    assert seal_backup(got, key, Replay([x(B2["salt"]), x(B2["nonce"])])) == data
    for change in (
        lambda d: d["groups"][0].pop("es"),
        lambda d: d["groups"][0].update(es=b"short"),
        lambda d: d["groups"][0].update(log=[]),
        lambda d: d["groups"][0].update(spy=1),
        lambda d: d["groups"].append(dict(d["groups"][0])),
        lambda d: next(iter(d["groups"][0]["peers"].values())).__setitem__(4, {1: bytes(32)}),
        lambda d: d.update(v=1),
    ):
        d = msgpack.unpackb(x(B2["body"])[1:], raw=False)
        change(d)
        with pytest.raises(CorruptBackup):
            decode_body(b"\x02" + msgpack.packb(d, use_bin_type=True))
    # A version-1 body with groups is not a version-1 body.
    with pytest.raises(CorruptBackup):
        decode_body(b"\x01" + msgpack.packb({**doc, "v": 1}, use_bin_type=True))


# --- the session offer, §24.4 -------------------------------------------------------------------


def test_offer_layout_and_client() -> None:
    a, b = IdentityKeyPair(x(OF["sender_seed"])), IdentityKeyPair(x(OF["recipient_seed"]))
    ct = x(OF["ct"])
    assert len(ct) == 2048
    sender, inner = unseal(ct, recipient=b)
    assert sender == a.public
    assert inner[:2] == b"\x01\x03"
    (n,) = struct.unpack(">I", inner[2:6])
    body = inner[6 : 6 + n]
    assert inner[6 + n :] == bytes(len(inner) - 6 - n)
    assert struct.unpack(">QH", body[:10]) == (OF["ts"], 0)
    assert body[10:] == x(OF["bundle"])
    offer = open_offer(b, ct, expected=a.public)
    assert offer.ts == OF["ts"] and offer.bundle.to_bytes() == x(OF["bundle"])
    again = seal_offer(a, b.public, offer.bundle, ts=OF["ts"], rng=Replay(
        [x(c) for c in OF["seal_rng"]]))  # fmt: skip
    assert again == ct


def test_offer_refusals() -> None:
    a, b = IdentityKeyPair(x(OF["sender_seed"])), IdentityKeyPair(x(OF["recipient_seed"]))
    ct = x(OF["ct"])
    stranger = IdentityKeyPair(bytes(range(32)))
    with pytest.raises(DecryptionError):
        open_offer(b, ct, expected=stranger.public)  # not from the contact we know
    with pytest.raises(DecryptionError):
        open_offer(a, ct, expected=a.public)  # not for us
    for pos in (0, 40, 200, 2047):
        bad = bytearray(ct)
        bad[pos] ^= 1
        with pytest.raises(DecryptionError):
            open_offer(b, bytes(bad), expected=a.public)
    with pytest.raises(DecryptionError):
        open_offer(b, ct[:1024], expected=a.public)


# --- the device list (§24.5) and linking (§24.6), from the spec ---------------------------------

DL, LK = V["device_list"], V["linking"]


def test_device_list_from_the_spec_and_client() -> None:
    ik = IdentityKeyPair(x(DL["identity_seed"]))
    raw = x(DL["raw"])
    body, sig = raw[:-64], raw[-64:]
    nacl.bindings.crypto_sign_open(
        sig + b"blindrelay/v1/device-list\x00" + body, bytes(ik.public)[:32]
    )
    assert body[0] == 1 and struct.unpack(">I", body[1:5])[0] == DL["version"]
    assert body[5] == len(DL["devices"])
    pos = 6
    for did, name in DL["devices"]:
        assert body[pos : pos + 16] == x(did) and body[pos + 16] == len(name)
        assert body[pos + 17 : pos + 17 + len(name)] == name.encode()
        pos += 17 + len(name)
    assert pos == len(body)
    got = DeviceList.parse(raw, ik.public)
    assert got.version == DL["version"] and [n for _, n in got.devices] == ["phone", "laptop"]
    again = DeviceList.sign(ik, DL["version"], [(x(d), n) for d, n in DL["devices"]])
    assert again.raw == raw  # Ed25519 is deterministic


def test_device_list_tampering() -> None:
    ik = IdentityKeyPair(x(DL["identity_seed"]))
    raw = x(DL["raw"])
    for pos in (0, 3, 7, 30, len(raw) - 70, len(raw) - 1):
        bad = bytearray(raw)
        bad[pos] ^= 1
        with pytest.raises(InvalidDeviceList):
            DeviceList.parse(bytes(bad), ik.public)
    with pytest.raises(InvalidDeviceList):
        DeviceList.parse(raw, IdentityKeyPair(bytes(32)).public)  # another identity
    with pytest.raises(InvalidDeviceList):
        DeviceList.parse(raw[:-1], ik.public)
    with pytest.raises(LocalProtocolError):
        DeviceList.sign(ik, 3, [(bytes([i]) * 16, "d") for i in range(MAX_DEVICES + 1)])
    with pytest.raises(LocalProtocolError):
        DeviceList.sign(ik, 3, [(bytes(16), "a"), (bytes(16), "b")])
    did, sid, cap = bytes(16), bytes(range(16)), bytes(32)
    ext = encode_device_part(x(DL["devices"][0][0]), sid, cap, raw)
    assert decode_device_part(ext, ik.public)[0] == x(DL["devices"][0][0])
    with pytest.raises(InvalidDeviceList):
        decode_device_part(encode_device_part(did, sid, cap, raw), ik.public)  # not listed


def test_linking_transcript_from_the_spec() -> None:
    code = LK["code"]
    assert code.startswith("brlink1:")
    b = code[len("brlink1:") :]
    payload = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))
    assert payload == x(LK["code_payload"])
    assert payload[0] == 1 and payload[85:] == b"https://relay.example"
    x_n_pub = payload[53:85]
    x_e = x(LK["approver_x25519"])
    x_e_pub = nacl.bindings.crypto_scalarmult_base(x_e)
    assert nacl.bindings.crypto_scalarmult_base(x(LK["new_device_x25519"])) == x_n_pub
    dh = nacl.bindings.crypto_scalarmult(x_e, x_n_pub)
    assert dh == nacl.bindings.crypto_scalarmult(x(LK["new_device_x25519"]), x_e_pub)
    th = hashlib.sha256(b"blindrelay/v1/link\x00" + payload + x_e_pub).digest()
    assert th == x(LK["th"])
    key = HKDF(hashes.SHA256(), 32, th, b"blindrelay/v1/link-key").derive(dh)
    assert key == x(LK["key"])
    sas = HKDF(hashes.SHA256(), 4, th, b"blindrelay/v1/link-sas").derive(dh)
    assert f"{int.from_bytes(sas, 'big') % 1_000_000:06d}" == LK["sas"]
    m1 = x(LK["msg1"])
    assert len(m1) == 256 and m1[:2] == b"\x01\x01" and m1[2:34] == x_e_pub and not any(m1[34:])
    m2 = x(LK["msg2"])
    assert (
        m2[:2] == b"\x01\x02"
        and m2[2:26] == x(LK["nonce"])
        and len(m2) in (256 << i for i in range(9))
    )
    p = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(m2[26:], th, m2[2:26], key)
    (n,) = struct.unpack(">I", p[:4])
    assert p[4 : 4 + n] == x(LK["transfer"]) and not any(p[4 + n :])
    t = msgpack.unpackb(x(LK["transfer"])[1:], raw=False)
    assert sorted(t) == ["b", "did", "dl", "from", "sc", "ss"]


def test_linking_through_the_client() -> None:
    lc = LinkCode.parse(LK["code"])
    assert lc.text == LK["code"] and lc.relay == "https://relay.example"
    x_e = X25519KeyPair(x(LK["approver_x25519"]))
    x_n = X25519KeyPair(x(LK["new_device_x25519"]))
    keys = link_keys(lc, x_e.dh(lc.public), bytes(x_e.public))
    assert keys.sas == LK["sas"] and keys.th == x(LK["th"])
    assert msg1(x_e) == x(LK["msg1"])
    approver = open_msg1(x(LK["msg1"]))
    assert link_keys(lc, x_n.dh(approver), approver).key == x(LK["key"])
    assert seal_msg2(keys, x(LK["transfer"]), x(LK["nonce"])) == x(LK["msg2"])
    assert open_msg2(keys, x(LK["msg2"])) == x(LK["transfer"])
    assert decode_transfer(x(LK["transfer"]))["did"]
    other = link_keys(lc, bytes(32), bytes(x_e.public))
    with pytest.raises(DecryptionError):
        open_msg2(other, x(LK["msg2"]))  # a third party's keys
    for bad in ("brlink1:" + LK["code"][9:-2], "brlink2:" + LK["code"][8:], "hello"):
        with pytest.raises(LinkError):
            LinkCode.parse(bad)
    with pytest.raises(DecryptionError):
        open_msg1(x(LK["msg2"]))


def test_own_actions_from_the_spec_and_the_client() -> None:
    """§24.7 ``own``: ``0x01 || msgpack {t, to, c}`` with ``c`` one encoded content."""
    from clientlib.client.content import OwnAction, decode_content

    ow = V["own"]
    kinds = []
    for case in ow["cases"]:
        raw = x(case["own"])
        assert raw[0] == 1
        doc = msgpack.unpackb(raw[1:], raw=False)
        assert list(doc) == ["t", "to", "c"] and doc["t"] == "own"
        assert doc["to"] == x(ow["to"]) and doc["c"] == x(case["inner"])
        inner = msgpack.unpackb(doc["c"][1:], raw=False)
        kinds.append(inner["t"])
        got = decode_content(raw)
        assert isinstance(got, OwnAction) and got.c == x(case["inner"])
        assert OwnAction(to=got.to, c=got.c).encode() == raw
    assert kinds == ["del", "edit", "rx", "rcp"]
