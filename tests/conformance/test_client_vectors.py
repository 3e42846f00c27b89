"""protocol.md Part III vectors (``tests/vectors/client-v1.json``): reproduced by clientlib and
re-derived through an independent path (``cryptography`` HKDF, a pure-Python HChaCha20 with
``cryptography``'s ChaCha20-Poly1305, stdlib base64, plain msgpack)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.pwhash import argon2id
from test_crypto_independent import xchacha_seal

from clientlib.client.content import decode_content
from clientlib.client.invite import (
    IdentityMismatch,
    Invitation,
    _bundle_key,
    identity_hash,
    open_bundle,
    seal_item,
    seal_static,
)
from clientlib.crypto.keys import IdentityKeyPair
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair, SignedPreKey
from clientlib.keystore.errors import WrongPassphrase
from clientlib.keystore.file import FileKeystore
from clientlib.wire.pow import capability_hash, pow_valid, recall_hash

V = json.loads((Path(__file__).parents[1] / "vectors" / "client-v1.json").read_text())["client-v1"]


def x(s: str) -> bytes:
    return bytes.fromhex(s)


def test_invitation_link() -> None:
    v = V["invitation"]
    inv = Invitation(v["relay_url"], x(v["sid"]), x(v["k"]))
    assert inv.link == v["link"]
    assert Invitation.parse(v["link"]) == inv
    # Independent: base URL || "/v1/invite#" || base64url_nopad(0x01 || sid || k).
    token = base64.urlsafe_b64encode(b"\x01" + x(v["sid"]) + x(v["k"])).rstrip(b"=").decode()
    assert v["link"] == v["relay_url"] + "/v1/invite#" + token


def test_address_bundle_key_and_seals() -> None:
    v = V["address_bundle"]
    k, sid = x(v["k"]), x(v["sid"])
    kb = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=b"blindrelay/v1/address-bundle"
    ).derive(k)
    assert kb == x(v["kb"]) == _bundle_key(k)
    static_ad = b"blindrelay/v1/address-static\x00" + sid
    item_ad = b"blindrelay/v1/address-item\x00" + sid
    sn, inn = x(v["static_nonce"]), x(v["item_nonce"])
    assert sn + xchacha_seal(kb, sn, x(v["static_plaintext"]), static_ad) == x(v["static"])
    assert inn + xchacha_seal(kb, inn, x(v["item_plaintext"]), item_ad) == x(v["item"])


def test_address_bundle_reproduced_and_opened() -> None:
    v = V["address_bundle"]
    k, sid = x(v["k"]), x(v["sid"])
    ik = IdentityKeyPair(x(v["identity_seed"]))
    assert bytes(ik.public).hex() == v["identity"]
    pt = x(v["static_plaintext"])
    spk_size = PreKeyKind.X25519_SIGNED.record_size
    spk = SignedPreKey.parse(pt[32 : 32 + spk_size], ik.public)
    lr = SignedPreKey.parse(pt[32 + spk_size :], ik.public)
    item_pt = x(v["item_plaintext"])
    kem_size = PreKeyKind.MLKEM_ONE_TIME.record_size
    kem = SignedPreKey.parse(item_pt[:kem_size], ik.public)
    opk = SignedPreKey.parse(item_pt[kem_size:], ik.public)
    sn, inn = x(v["static_nonce"]), x(v["item_nonce"])
    assert seal_static(k, sid, ik.public, spk, lr, lambda n: sn) == x(v["static"])
    assert seal_item(k, sid, kem, opk, lambda n: inn) == x(v["item"])
    bundle = open_bundle(
        Invitation("https://relay.example.org", sid, k), x(v["static"]), x(v["item"])
    )
    assert bundle.identity == ik.public
    assert bundle.kem_prekey.raw == kem.raw and bundle.one_time_prekey is not None


def test_content_encodings() -> None:
    for case in V["content"]:
        data = x(case["encoded"])
        assert data[0] == 1
        fields = msgpack.unpackb(data[1:], raw=False)
        assert fields["t"] == case["name"].split("-")[0]
        assert next(iter(fields)) == "t"  # "t" first, then schema order
        decoded = decode_content(data)
        assert decoded.encode() == data


def test_invitation_link_v2() -> None:
    v = V["invitation_v2"]
    ik = IdentityKeyPair(x(V["address_bundle"]["identity_seed"]))
    assert bytes(ik.public).hex() == v["identity"]
    # Independent: h = SHA-256("blindrelay/v1/invite-identity" || 0x00 || IK)[0:16].
    h = hashlib.sha256(b"blindrelay/v1/invite-identity\x00" + x(v["identity"])).digest()[:16]
    assert h == x(v["identity_hash"]) == identity_hash(ik.public)
    token = base64.urlsafe_b64encode(b"\x02" + x(v["sid"]) + x(v["k"]) + h).rstrip(b"=").decode()
    assert v["link"] == v["relay_url"] + "/v1/invite#" + token
    inv = Invitation.for_identity(v["relay_url"], x(v["sid"]), x(v["k"]), ik.public)
    assert inv.link == v["link"] and inv.version == 2 and inv.commits_to_identity
    assert Invitation.parse(v["link"]) == inv
    # The v1 link of the same address still parses (upgrade path), flagged.
    old = Invitation.parse(V["invitation"]["link"])
    assert old.version == 1 and not old.commits_to_identity and old.identity_hash is None
    assert (old.sid, old.key) == (inv.sid, inv.key)


def test_v2_invitation_refuses_a_substituted_bundle() -> None:
    """Finding 4 (issue 20): whoever knows sid and k (the relay operator for a published
    link) seals a bundle of its OWN identity under them. A v1 link accepts it; v2 refuses."""
    v = V["address_bundle"]
    k, sid = x(v["k"]), x(v["sid"])
    ik = IdentityKeyPair(x(v["identity_seed"]))
    mallory = IdentityKeyPair(hashlib.sha256(b"mallory").digest())
    spk = PreKeyPair.generate(mallory, PreKeyKind.X25519_SIGNED, 1, os.urandom)
    lr = PreKeyPair.generate(mallory, PreKeyKind.MLKEM_LAST_RESORT, 2, os.urandom)
    forged = seal_static(k, sid, mallory.public, spk.public_record, lr.public_record, os.urandom)
    v1 = Invitation.parse(V["invitation"]["link"])
    assert open_bundle(v1, forged, None).identity == mallory.public  # the attack on v1
    v2 = Invitation.parse(V["invitation_v2"]["link"])
    with pytest.raises(IdentityMismatch, match="does not match the invitation"):
        open_bundle(v2, forged, None)
    assert open_bundle(v2, x(v["static"]), x(v["item"])).identity == ik.public


# --- revision 6 (issue 22 items 10 and 20) --------------------------------------------------


def test_requester_handle() -> None:
    """protocol.md §22.2: hk = HKDF(seed, 0^32, "blindrelay/v1/handle-key", 32);
    hdl = HMAC(hk, "blindrelay/v1/handle" || 0x00 || sid)[0:16]."""
    v = V["handle"]
    hk = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=b"blindrelay/v1/handle-key"
    ).derive(x(v["identity_seed"]))
    assert hk == x(v["hk"])
    mac = hmac.new(hk, b"blindrelay/v1/handle\x00" + x(v["address_sid"]), hashlib.sha256)
    assert mac.digest()[:16] == x(v["hdl"])


def test_capability_hash() -> None:
    """protocol.md §4.8: h = SHA-256("blindrelay/v1/cap" || 0x00 || sid || cap)."""
    v = V["capability_hash"]
    h = hashlib.sha256(b"blindrelay/v1/cap\x00" + x(v["sid"]) + x(v["cap"])).digest()
    assert h == x(v["h"]) == capability_hash(x(v["sid"]), x(v["cap"]))


def _zero_bits(d: bytes) -> int:
    n = 0
    for byte in d:
        if byte:
            return n + 8 - byte.bit_length()
        n += 8
    return n


def test_pow_digest() -> None:
    """protocol.md §4.9: d = SHA-256("blindrelay/v1/pow" || 0x00 || sid || nonce || eid ||
    u64be(pwc)), leading zero bits counted from the top bit of d[0]."""
    v = V["pow"]
    prefix = b"blindrelay/v1/pow\x00" + x(v["sid"]) + x(v["nonce"]) + x(v["eid"])
    d = hashlib.sha256(prefix + v["counter"].to_bytes(8, "big")).digest()
    assert d == x(v["digest"])
    assert _zero_bits(d) == v["leading_zero_bits"] >= v["bits"]
    assert hashlib.sha256(prefix + bytes(8)).digest() == x(v["digest_counter_0"])
    # The smallest counter: every smaller one falls short (the relay would answer POW).
    for c in range(v["counter"]):
        assert _zero_bits(hashlib.sha256(prefix + c.to_bytes(8, "big")).digest()) < v["bits"]
    assert pow_valid(x(v["sid"]), x(v["nonce"]), x(v["eid"]), v["counter"], v["bits"])
    assert not pow_valid(x(v["sid"]), x(v["nonce"]), x(v["eid"]), v["counter"], 32)


def test_keystore_file(tmp_path: Path) -> None:
    """protocol.md §23.4, from the table alone: header, Argon2id key, XChaCha20-Poly1305 with
    the header as AD, a sorted msgpack body; and the reference client opens the file."""
    v = V["keystore"]
    data = x(v["file"])
    assert data[:4] == b"BRKS" and data[4] == 1
    assert int.from_bytes(data[5:9], "big") == v["opslimit"]
    assert int.from_bytes(data[9:13], "big") == v["memlimit_kib"]
    assert data[13:29] == x(v["salt"]) and data[29:53] == x(v["nonce"])
    key = argon2id.kdf(
        32,
        x(v["passphrase"]),
        x(v["salt"]),
        opslimit=v["opslimit"],
        memlimit=v["memlimit_kib"] * 1024,
    )
    assert key == x(v["key"])
    assert xchacha_seal(key, x(v["nonce"]), x(v["body"]), data[:53]) == data[53:]
    body = msgpack.unpackb(x(v["body"]), raw=False)
    assert list(body) == sorted(body)
    assert {ns: {k.hex(): val.hex() for k, val in kv.items()} for ns, kv in body.items()} == v[
        "entries"
    ]
    path = tmp_path / "vector.keystore"
    path.write_bytes(data)
    ks = FileKeystore.open(path, x(v["passphrase"]), rng=os.urandom)
    try:
        for ns, kv in v["entries"].items():
            assert ks.items(ns) == sorted((x(k), x(val)) for k, val in kv.items())
    finally:
        ks.close()
    # A flipped header byte (the AD) is refused like a wrong passphrase.
    bad = bytearray(data)
    bad[12] ^= 1  # memlimit 8 -> 9 KiB: still in range, authenticated by the AEAD
    path.write_bytes(bytes(bad))
    with pytest.raises(WrongPassphrase):
        FileKeystore.open(path, x(v["passphrase"]), rng=os.urandom)


def test_invitation_link_v3_pins_the_relay_identity() -> None:
    """Revision 11 (protocol.md §21.2, §27.3): 0x03 || sid || k || h || hr."""
    v = V["invitation_v3"]
    hr = hashlib.sha256(b"blindrelay/v1/relay-identity\x00" + x(v["relay_identity"])).digest()[:16]
    assert hr == x(v["relay_hash"])
    raw = b"\x03" + x(v["sid"]) + x(v["k"]) + x(v["identity_hash"]) + hr
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert v["link"] == v["relay_url"] + "/v1/invite#" + token
    inv = Invitation.parse(v["link"])
    assert inv.version == 3 and inv.commits_to_identity and inv.relay_hash == hr
    assert inv.identity_hash == x(v["identity_hash"]) and inv.link == v["link"]
    # The same link without hr is the version-2 link of the address.
    assert Invitation(inv.relay_url, inv.sid, inv.key, inv.identity_hash).link == V["invitation_v2"]["link"]


def test_recall_hash() -> None:
    """protocol.md §5.10 (revision 15): rc = SHA-256("blindrelay/v1/recall" || 0x00 || rs)."""
    v = V["recall_hash"]
    rc = hashlib.sha256(b"blindrelay/v1/recall\x00" + x(v["rs"])).digest()
    assert rc == x(v["rc"]) == recall_hash(x(v["rs"]))
