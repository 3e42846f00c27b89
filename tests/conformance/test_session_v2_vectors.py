"""Body version 2 session vectors (``tests/vectors/session-v2.json``, protocol.md §12.4,
§12.5, §15.5.8; generator ``tests/vectors/generate_session_v2_vectors.py``).

Two paths meet here. The implementation replays every sender's recorded rng draws and must
reproduce each envelope byte for byte, then deliver them (out of order across a DH step)
with the listed plaintexts and AMF signatures, and refuse every invalid one leaving the
session unchanged. The second path re-derives every envelope from protocol.md alone, without
clientlib: the AMF signature from the hedge of §15.5.5 (integers mod L and libsodium's point
operations), the body-v2 layout, padding, the commitment, the AEAD and the sealed layer
(``cryptography`` and a pure-Python HChaCha20, from ``test_crypto_independent``), and checks
each signature as the recipient and as the judge would (§15.5.7).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import nacl.bindings as nb
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_amf_vectors import NONCE_LABEL, B, L, le, spec_h2s, spec_mul, spec_scalar, spec_verify
from test_crypto_independent import (
    ed_pub_to_x,
    ed_seed_to_x,
    hkdf,
    hmac256,
    x25519,
    x25519_pub,
    xchacha_seal,
)
from test_crypto_vectors import Replay, prekey, ref_encapsulate

from clientlib.crypto import IdentityKeyPair, PreKeyPair
from clientlib.errors import DecryptionError
from clientlib.session import ModeratorKey, Session, accept, initiate, open_envelope

V = json.loads((Path(__file__).parents[1] / "vectors" / "session-v2.json").read_text())[
    "session-v2"
]
x = bytes.fromhex
KID = V["moderator"]["kid"]
M = x(V["moderator"]["M"])
M_OTHER = x(V["other_moderator"]["M"])
J = int.from_bytes(x(V["moderator"]["j"]), "little")


def lookup(kid: int) -> bytes | None:
    return M if kid == KID else None


def _bob() -> tuple[IdentityKeyPair, dict[str, PreKeyPair]]:
    b = V["bob"]
    names = ("signed_prekey", "kem_one_time_prekey", "one_time_prekey")
    return IdentityKeyPair(x(b["identity_seed"])), {n: prekey(b[n]) for n in names}


def test_the_implementation_reproduces_and_delivers_every_envelope() -> None:
    alice = IdentityKeyPair(x(V["alice_identity_seed"]))
    bob, pks = _bob()
    ids = {"alice": alice, "bob": bob}
    mod = ModeratorKey(KID, M)
    sessions: dict[str, Session] = {}
    msgs = V["messages"]
    for i, m in enumerate(msgs):
        rng = Replay(m["rng"])
        if i == 0:
            s, env = initiate(
                alice,
                x(V["bundle"]),
                x(m["plaintext"]),
                rng=rng,
                now=m["now"],
                encapsulate=ref_encapsulate(rng),
                moderator=mod,
            )
            sessions["alice"] = s
        else:
            env = sessions[m["from"]].encrypt(
                x(m["plaintext"]), rng=rng, now=m["now"], identity=ids[m["from"]], moderator=mod
            )
        assert not rng.draws
        assert (env.ct, env.fc) == (x(m["ct"]), x(m["fc"])), f"message {i}"
        if i == 0:
            acc = accept(
                bob,
                open_envelope(bob, env.ct),
                env.fc,
                signed_prekey=pks["signed_prekey"],
                kem_prekey=pks["kem_one_time_prekey"],
                one_time_prekey=pks["one_time_prekey"],
                now=m["now"],
                moderator_keys=lookup,
            )
            assert acc.message.plaintext == x(m["plaintext"])
            assert acc.message.amf_signature == x(m["intermediate"]["sigma"])
            sessions["bob"] = acc.session
        elif i == 1 or i in (2, 5):
            me = "bob" if i == 1 else "alice"
            got = sessions[me].receive(
                env.ct, env.fc, identity=ids[me], now=m["now"], moderator_keys=lookup
            )
            assert got.plaintext == x(m["plaintext"]) and got.akid == KID
    for i in V["deliveries"]:
        m = msgs[i]
        me = "bob" if m["from"] == "alice" else "alice"
        got = sessions[me].receive(
            x(m["ct"]), x(m["fc"]), identity=ids[me], now=m["now"], moderator_keys=lookup
        )
        assert got.plaintext == x(m["plaintext"])
        assert got.akid == m["akid"] and got.amf_signature == x(m["intermediate"]["sigma"])
    before = sessions["bob"].to_record().to_bytes()
    for case in V["invalid"]:
        with pytest.raises(DecryptionError):
            sessions["bob"].receive(
                x(case["ct"]), x(case["fc"]), identity=bob, now=2_000_000_000, moderator_keys=lookup
            )
        assert sessions["bob"].to_record().to_bytes() == before, case["note"]


def spec_sign(seed: bytes, rnd: bytes, snd: bytes, rcp: bytes, m: bytes, fc: bytes) -> bytes:
    """protocol.md §15.5.5, steps 1-7, from the text."""
    s = spec_scalar(seed)
    assert nb.crypto_scalarmult_ed25519_base_noclamp(le(s)) == snd
    pub = struct.pack(">I", KID) + snd + rcp + m
    hedge = hashlib.sha512(NONCE_LABEL + le(s) + rnd + pub + fc).digest()
    scalars, i = [], 0
    while len(scalars) < 10:
        v = spec_h2s(hedge + bytes((i,)))
        i += 1
        if v:
            scalars.append(v)
    alpha, k_a, c_a1, z_a1, k_b, c_b1, z_b1, k_c, c_c1, z_c1 = scalars
    ej, jj = spec_mul(alpha, B), spec_mul(alpha, m)

    def sim(z: int, c: int, base: bytes, p: bytes) -> bytes:
        return nb.crypto_core_ed25519_sub(spec_mul(z, base), spec_mul(c, p))

    ts = [
        spec_mul(k_a, B),
        sim(z_a1, c_a1, B, jj),
        spec_mul(k_b, B),
        sim(z_b1, c_b1, B, rcp),
        spec_mul(k_c, B),
        spec_mul(k_c, m),
        sim(z_c1, c_c1, B, rcp),
    ]
    c = spec_h2s(b"blindrelay/v1/amf\x00" + pub + ej + jj + fc + b"".join(ts))
    c_a0, c_b0, c_c0 = (c - c_a1) % L, (c - c_b1) % L, (c - c_c1) % L
    z_a0, z_b0, z_c0 = (k_a + c_a0 * s) % L, (k_b + c_b0 * s) % L, (k_c + c_c0 * alpha) % L
    parts = [c_a0, z_a0, c_a1, z_a1, c_b0, z_b0, c_b1, z_b1, c_c0, z_c0, c_c1, z_c1]
    return ej + jj + b"".join(le(v) for v in parts)


def _pub(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


@pytest.mark.parametrize("i", range(len(V["messages"])))
def test_every_envelope_from_the_spec(i: int) -> None:
    m: dict[str, Any] = V["messages"][i]
    it = m["intermediate"]
    seeds = {"alice": x(V["alice_identity_seed"]), "bob": x(V["bob"]["identity_seed"])}
    me = m["from"]
    peer = "bob" if me == "alice" else "alice"
    snd, rcp = _pub(seeds[me]), _pub(seeds[peer])
    draws = [x(d) for d in m["rng"]]
    if i == 0:
        draws = draws[3:]  # EK_A, the ML-KEM coins, the first ratchet key: the handshake's
    fk, rnd, eph = draws[0], draws[1], draws[-1]
    pt = x(m["plaintext"])
    # §15.1: the commitment.
    fc = hmac256(
        fk, b"blindrelay/v1/franking\x00" + snd + rcp + struct.pack(">I", len(pt)) + pt + b"\x00"
    )
    assert fc == x(m["fc"])
    # §15.5.5: the AMF signature from its hedge, accepted by the recipient's and the judge's
    # checks of §15.5.7, and refused as the judge under another relay's key.
    sigma = spec_sign(seeds[me], rnd, snd, rcp, M, fc)
    assert sigma == x(it["sigma"])
    assert spec_verify(snd, rcp, M, KID, fc, sigma)[0]
    assert spec_verify(snd, rcp, M, KID, fc, sigma, j=J)[0]
    assert not spec_verify(snd, rcp, M_OTHER, KID, fc, sigma)[0]
    # §12.4 step 2: body version 2; §14: padding to the bucket of the message type.
    body = b"\x02" + fk + struct.pack(">I", m["akid"]) + sigma + b"\x00" + pt
    assert body == x(it["body"]) and len(body) - len(pt) == V["layout"]["fixed_prefix"]
    padded = x(it["padded_body"])
    assert padded[:4] == struct.pack(">I", len(body)) and padded[4 : 4 + len(body)] == body
    assert padded[4 + len(body) :] == bytes(len(padded) - 4 - len(body))
    # §12.2: message keys; §12.4 steps 5-7: the inner message.
    ck = x(it["chain_key"])
    assert hmac256(ck, b"\x01") == x(it["message_key"])
    assert hmac256(ck, b"\x02") == x(it["next_chain_key"])
    keys = hkdf(x(it["message_key"]), bytes(32), b"blindrelay/v1/ratchet/message-keys", 56)
    ad = x(it["aead_ad"])
    prefix = ad[64:]
    assert ad[32:64] == fc
    inner = x(it["inner"])
    assert inner == prefix + xchacha_seal(keys[:32], keys[32:], padded, ad)
    assert inner[1] == (0x01 if i < 2 else 0x02)  # prekey messages until Alice hears back
    # §13.2: the sealed layer.
    r = ed_pub_to_x(rcp)
    e_pub = x25519_pub(eph)
    dh_e = x25519(eph, r)
    dh_s = x25519(ed_seed_to_x(seeds[me]), r)
    k1 = hkdf(dh_e, bytes(32), b"blindrelay/v1/sealed/ephemeral" + r + e_pub, 56)
    head = b"\x01" + e_pub
    enc_static = xchacha_seal(k1[:32], k1[32:], snd, head)
    k2 = hkdf(dh_e + dh_s, bytes(32), b"blindrelay/v1/sealed/static" + r + e_pub + enc_static, 56)
    ct = head + enc_static + xchacha_seal(k2[:32], k2[32:], inner, head + enc_static)
    assert ct == x(m["ct"])
