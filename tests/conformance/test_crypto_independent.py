"""Re-derive crypto-v1.json through an independent code path.

Nothing here calls clientlib: HKDF, HMAC, X25519, Ed25519 and ChaCha20-Poly1305 come from
``cryptography`` (OpenSSL); XChaCha20-Poly1305 is built from a pure-Python HChaCha20 on top of
it; the Ed25519 -> X25519 maps are written out from RFC 7748 / RFC 8032; ML-KEM-768 is the
pure-Python FIPS 203 of ``tests/vectors/mlkem_ref.py``, checked against ``cryptography``'s.
The layouts are re-built from protocol.md §10-§16, so a mismatch means the spec, the vectors
and the code disagree.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
sys.path.insert(0, str(VECTORS_DIR))
import mlkem_ref  # noqa: E402

V = json.loads((VECTORS_DIR / "crypto-v1.json").read_text())["v1"]["valid"]
x = bytes.fromhex
P = 2**255 - 19


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def hmac256(key: bytes, data: bytes) -> bytes:
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def x25519(priv: bytes, pub: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(priv).exchange(
        X25519PublicKey.from_public_bytes(pub)
    )


def x25519_pub(priv: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return (
        X25519PrivateKey.from_private_bytes(priv)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def ed_seed_to_x(seed: bytes) -> bytes:
    """RFC 8032 §5.1.5: the scalar is the clamped low half of SHA-512(seed)."""
    a = bytearray(hashlib.sha512(seed).digest()[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return bytes(a)


def ed_pub_to_x(pub: bytes) -> bytes:
    """RFC 7748 §4.1: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, P - 2, P) % P
    return u.to_bytes(32, "little")


def _rotl(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 7)

    rounds = [(0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)]
    rounds += [(0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)]
    for _ in range(10):
        for a, b, c, d in rounds:
            qr(a, b, c, d)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_seal(key: bytes, nonce: bytes, pt: bytes, ad: bytes) -> bytes:
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00" * 4 + nonce[16:], pt, ad)


def test_hchacha20_draft_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = x("000000090000004a0000000031415927")
    assert hchacha20(key, nonce) == x(
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    )


def test_kdfs_independent() -> None:
    for c in V["kdf_root"]:
        out = hkdf(x(c["dh_output"]), x(c["root_key"]), b"blindrelay/v1/ratchet/root", 64)
        assert out == x(c["new_root_key"]) + x(c["chain_key"])
    for c in V["kdf_chain"]:
        ck = x(c["chain_key"])
        assert hmac256(ck, b"\x02") == x(c["next_chain_key"])
        assert hmac256(ck, b"\x01") == x(c["message_key"])
    for c in V["kdf_message_keys"]:
        out = hkdf(x(c["message_key"]), bytes(32), b"blindrelay/v1/ratchet/message-keys", 56)
        assert out == x(c["aead_key"]) + x(c["aead_nonce"])
    for c in V["hkdf"]:
        assert hkdf(x(c["ikm"]), x(c["salt"]), x(c["info"]), c["length"]) == x(c["okm"])


def _verify_record(record: bytes, identity: bytes) -> tuple[int, int, bytes]:
    kind, key_id = record[1], struct.unpack(">I", record[2:6])[0]
    Ed25519PublicKey.from_public_bytes(identity).verify(
        record[-64:], b"blindrelay/v1/prekey\x00" + record[:-64]
    )
    return kind, key_id, record[6:-64]


def test_bob_prekeys_independent() -> None:
    bob = V["bob"]
    seed = x(bob["identity_seed"])
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert pub == x(bob["identity_public"])
    assert ed_pub_to_x(pub) == x(bob["identity_x25519_public"]) == x25519_pub(ed_seed_to_x(seed))
    for name in (
        "signed_prekey",
        "kem_one_time_prekey",
        "kem_last_resort_prekey",
        "one_time_prekey",
    ):
        d = bob[name]
        kind, key_id, public = _verify_record(x(d["record"]), pub)
        assert (kind, key_id, public.hex()) == (d["kind"], d["key_id"], d["public"])
        if kind in (3, 4):
            seed64 = x(d["private"])
            ek, _dk = mlkem_ref.keygen(seed64[:32], seed64[32:])
            assert ek == public
            assert (
                mlkem.MLKEM768PrivateKey.from_seed_bytes(seed64).public_key().public_bytes_raw()
                == ek
            )
        else:
            assert x25519_pub(x(d["private"])) == public


def _parse_bundle(raw: bytes) -> dict:
    ik = raw[1:33]
    flags = raw[33]
    spk = raw[34 : 34 + 102]
    pq = raw[136 : 136 + 1254]
    opk = raw[1390 : 1390 + 102] if flags & 1 else None
    assert len(raw) == 1390 + (102 if opk else 0)
    return {
        "ik": ik,
        "spk": _verify_record(spk, ik),
        "pq": _verify_record(pq, ik),
        "opk": _verify_record(opk, ik) if opk else None,
    }


def test_handshake_independent() -> None:
    bob = V["bob"]
    kem_seeds = {
        d["key_id"]: x(d["private"])
        for d in (bob["kem_one_time_prekey"], bob["kem_last_resort_prekey"])
    }
    for c in V["handshake"]:
        b = _parse_bundle(x(c["bundle"]))
        a_seed = x(c["alice_identity_seed"])
        a_x = ed_seed_to_x(a_seed)
        assert a_x == x(c["alice_identity_x25519_private"])
        ek = x(c["ephemeral_private"])
        spk = b["spk"][2]
        dhs = [x25519(a_x, spk), x25519(ek, ed_pub_to_x(b["ik"])), x25519(ek, spk)]
        if b["opk"]:
            dhs.append(x25519(ek, b["opk"][2]))
        assert [d.hex() for d in dhs] == c["dh"]
        kem_key, kem_ct = mlkem_ref.encaps(b["pq"][2], x(c["kem_encaps_m"]))
        assert kem_ct == x(c["kem_ciphertext"]) and kem_key == x(c["kem_shared_secret"])
        dk = mlkem.MLKEM768PrivateKey.from_seed_bytes(kem_seeds[b["pq"][1]])
        assert dk.decapsulate(kem_ct) == kem_key
        header = (
            x(c["ephemeral_public"])
            + struct.pack(
                ">IBIBI",
                b["spk"][1],
                b["pq"][0],
                b["pq"][1],
                1 if b["opk"] else 0,
                b["opk"][1] if b["opk"] else 0,
            )
            + kem_ct
        )
        assert header == x(c["prekey_header"])
        a_pub = Ed25519PrivateKey.from_private_bytes(a_seed).public_key().public_bytes_raw()
        th = hashlib.sha256(
            b"blindrelay/v1/pqxdh/transcript"
            + a_pub
            + b["ik"]
            + spk
            + hashlib.sha256(b["pq"][2]).digest()
            + (b["opk"][2] if b["opk"] else bytes(32))
            + header
        ).digest()
        assert th == x(c["transcript_hash"])
        sk = hkdf(
            b"\xff" * 32 + b"".join(dhs) + kem_key, bytes(32), b"blindrelay/v1/pqxdh" + th, 32
        )
        assert sk == x(c["sk"])


def test_conversation_independent() -> None:
    conv = V["conversation"]
    bob = V["bob"]
    seeds = {"alice": x(conv["alice_identity_seed"]), "bob": x(bob["identity_seed"])}
    pubs = {
        k: Ed25519PrivateKey.from_private_bytes(s).public_key().public_bytes_raw()
        for k, s in seeds.items()
    }
    last_ratchet_pub: dict[str, bytes] = {"alice": _parse_bundle(x(conv["bundle"]))["spk"][2]}
    prev_chain: dict[str, bytes] = {}
    for i, m in enumerate(conv["messages"]):
        me = m["from"]
        peer = "bob" if me == "alice" else "alice"
        it = m["intermediate"]
        draws = [x(d) for d in m["rng"]]
        if i == 0:
            draws = draws[2:]  # EK_A and the ML-KEM coins belong to the handshake
        fk, eph = draws[0], draws[-1]
        # Double Ratchet: a DH step uses the new ratchet key drawn before the ephemeral.
        if "dh_step" in it:
            step = it["dh_step"]
            ratchet_priv = draws[1] if i else x(m["rng"][2])
            if i == 0:
                fk, ratchet_priv = draws[1], draws[0]
            assert x25519(ratchet_priv, last_ratchet_pub[me]) == x(step["dh_output"])
            out = hkdf(x(step["dh_output"]), x(step["root_key"]), b"blindrelay/v1/ratchet/root", 64)
            assert out == x(step["new_root_key"]) + x(step["sending_chain_key"])
            assert x(step["sending_chain_key"]) == x(it["chain_key"])
        else:
            assert prev_chain[me] == x(it["chain_key"])
        ck = x(it["chain_key"])
        assert hmac256(ck, b"\x01") == x(it["message_key"])
        prev_chain[me] = hmac256(ck, b"\x02")
        assert prev_chain[me] == x(it["next_chain_key"])
        keys = hkdf(x(it["message_key"]), bytes(32), b"blindrelay/v1/ratchet/message-keys", 56)
        assert keys == x(it["aead_key"]) + x(it["aead_nonce"])
        # Body, padding and franking (§14, §15).
        atts = [x(a) for a in m["attachment_hashes"]]
        pt = x(m["plaintext"])
        body = b"\x01" + fk + bytes([len(atts)]) + b"".join(atts) + pt
        assert body == x(it["body"])
        padded = x(it["padded_body"])
        assert padded[:4] == struct.pack(">I", len(body)) and padded[4 : 4 + len(body)] == body
        assert padded[4 + len(body) :] == bytes(len(padded) - 4 - len(body))
        fc = hmac256(
            fk,
            b"blindrelay/v1/franking\x00"
            + pubs[me]
            + pubs[peer]
            + struct.pack(">I", len(pt))
            + pt
            + bytes([len(atts)])
            + b"".join(atts),
        )
        assert fc == x(m["fc"])
        # Inner message (§12.4): AEAD over the padded body, AD = th || fc || prefix.
        inner = x(it["inner"])
        ad = x(it["aead_ad"])
        prefix = ad[64:]
        assert ad[32:64] == fc and inner.startswith(prefix)
        assert inner[len(prefix) :] == xchacha_seal(keys[:32], keys[32:], padded, ad)
        last_ratchet_pub[peer] = prefix[-40:-8]
        # Sealed sender (§13).
        r = ed_pub_to_x(pubs[peer])
        e_pub = x25519_pub(eph)
        dh_e = x25519(eph, r)
        dh_s = x25519(ed_seed_to_x(seeds[me]), r)
        k1 = hkdf(dh_e, bytes(32), b"blindrelay/v1/sealed/ephemeral" + r + e_pub, 56)
        head = b"\x01" + e_pub
        enc_static = xchacha_seal(k1[:32], k1[32:], pubs[me], head)
        k2 = hkdf(
            dh_e + dh_s, bytes(32), b"blindrelay/v1/sealed/static" + r + e_pub + enc_static, 56
        )
        ct = head + enc_static + xchacha_seal(k2[:32], k2[32:], inner, head + enc_static)
        assert ct == x(m["ct"]), f"message {i}"


def test_safety_numbers_independent() -> None:
    for c in V["safety_number"]:
        fps = []
        for key in ("identity_a", "identity_b"):
            ik = x(c[key])
            h = hashlib.sha512(b"blindrelay/v1/safety-number\x00" + ik).digest()
            for _ in range(5199):
                h = hashlib.sha512(h + ik).digest()
            fps.append(h[:32])
        assert fps == [x(c["fingerprint_a"]), x(c["fingerprint_b"])]
        low, high = sorted(fps)
        digits = "".join(
            f"{int.from_bytes(fp[i : i + 5], 'big') % 100000:05d}"
            for fp in (low, high)
            for i in range(0, 30, 5)
        )
        assert c["safety_number"].replace(" ", "") == digits
        assert x(c["qr_payload"]) == b"\x01" + low + high


def test_franking_independent() -> None:
    for c in V["franking"]:
        atts = [x(a) for a in c["attachment_hashes"]]
        msg = x(c["message"])
        data = (
            b"blindrelay/v1/franking\x00"
            + x(c["sender"])
            + x(c["recipient"])
            + struct.pack(">I", len(msg))
            + msg
            + bytes([len(atts)])
            + b"".join(atts)
        )
        assert data == x(c["commitment_input"])
        assert hmac256(x(c["franking_key"]), data) == x(c["commitment"])
