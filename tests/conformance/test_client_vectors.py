"""protocol.md Part III vectors (``tests/vectors/client-v1.json``): reproduced by clientlib and
re-derived through an independent path (``cryptography`` HKDF, a pure-Python HChaCha20 with
``cryptography``'s ChaCha20-Poly1305, stdlib base64, plain msgpack)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
