"""``route-v1.json`` (protocol.md §27.3) through the client, the relay and protocol.md alone.

The independent path uses ``cryptography``'s HKDF and Ed25519 and PyNaCl's X25519 and
XChaCha20-Poly1305, with the labels and layouts as §27.3 writes them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import nacl.bindings as b
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clientlib.client._route import open_answer, seal_packet
from clientlib.wire.relay_frames import RouteKeyEntry
from relay.forward import route_pow_digest
from relay.routing import RouteKeys, verify_entry

V = json.loads(Path(__file__).parents[1].joinpath("vectors", "route-v1.json").read_text())[
    "route-v1"
]
x = bytes.fromhex


def hkdf(ikm: bytes, info: bytes, length: int, salt: bytes = bytes(32)) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def test_keys_from_the_seed_independently() -> None:
    seed = x(V["seed"])
    ident = Ed25519PrivateKey.from_private_bytes(hkdf(seed, b"blindrelay/v1/relay-identity", 32))
    ri = ident.public_key().public_bytes_raw()
    assert ri.hex() == V["identity"]
    kid = V["now"] // V["rotation_s"]
    assert [k["kid"] for k in V["keys"]] == [kid, kid - 1]
    for k in V["keys"]:
        secret = hkdf(seed, b"blindrelay/v1/route-key" + struct.pack(">I", k["kid"]), 32)
        assert b.crypto_scalarmult_base(secret).hex() == k["key"]
        assert k["exp"] == (k["kid"] + 2) * V["rotation_s"]
        msg = b"blindrelay/v1/route-keys\x00" + struct.pack(">I", k["kid"]) + x(k["key"])
        msg += struct.pack(">Q", k["exp"])
        Ed25519PublicKey.from_public_bytes(ri).verify(x(k["sig"]), msg)  # raises if wrong
        assert ident.sign(msg).hex() == k["sig"]  # Ed25519 is deterministic


def test_keys_through_the_relay() -> None:
    keys = RouteKeys(x(V["seed"]), V["rotation_s"])
    assert keys.identity.hex() == V["identity"]
    published = keys.published(V["now"])
    assert [(e.kid, e.key.hex(), e.exp, e.sig.hex()) for e in published] == [
        (k["kid"], k["key"], k["exp"], k["sig"]) for k in V["keys"]
    ]
    assert all(verify_entry(keys.identity, e) for e in published)
    forged = RouteKeyEntry(
        kid=published[0].kid, key=bytes(32), exp=published[0].exp, sig=published[0].sig
    )
    assert not verify_entry(keys.identity, forged)


def test_packet_independently() -> None:
    p = V["packet"]
    key = x(V["keys"][0]["key"])
    epk = b.crypto_scalarmult_base(x(p["esk"]))
    assert epk.hex() == p["epk"]
    shared = b.crypto_scalarmult(x(p["esk"]), key)
    okm = hkdf(shared, b"blindrelay/v1/route", 64, salt=epk + key)
    assert okm[32:].hex() == p["reply_key"]
    header = b"\x01" + struct.pack(">I", p["kid"]) + epk
    ct = b.crypto_aead_xchacha20poly1305_ietf_encrypt(
        x(p["inner"]), header, x(p["nonce"]), okm[:32]
    )
    assert (header + x(p["nonce"]) + ct).hex() == p["pkt"]
    a = V["answer"]
    ans = x(a["nonce"]) + b.crypto_aead_xchacha20poly1305_ietf_encrypt(
        x(a["reply"]), b"blindrelay/v1/route-answer\x00" + epk, x(a["nonce"]), okm[32:]
    )
    assert ans.hex() == a["ans"]
    digest = hashlib.sha256(
        b"blindrelay/v1/route-pow\x00" + hashlib.sha256(x(p["pkt"])).digest()
        + struct.pack(">Q", V["pow"]["counter"])
    ).digest()  # fmt: skip
    assert int.from_bytes(digest, "big") >> (256 - V["pow"]["bits"]) == 0


def test_packet_through_client_and_relay() -> None:
    p = V["packet"]
    draws = iter([x(p["esk"]), x(p["nonce"])])
    pkt, kr, epk = seal_packet(
        p["kid"], x(V["keys"][0]["key"]), x(p["inner"]), lambda n: next(draws)
    )
    assert pkt.hex() == p["pkt"] and kr.hex() == p["reply_key"] and epk.hex() == p["epk"]
    opened = RouteKeys(x(V["seed"]), V["rotation_s"]).open(pkt, V["now"])
    assert opened.inner.hex() == p["inner"] and opened.reply_key == kr
    assert open_answer(kr, epk, x(V["answer"]["ans"])).hex() == V["answer"]["reply"]
    digest = route_pow_digest(pkt, V["pow"]["counter"])
    assert int.from_bytes(digest, "big") >> (256 - V["pow"]["bits"]) == 0
