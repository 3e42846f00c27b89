"""Generate tests/vectors/crypto-v1.json (protocol.md §10-§16) deterministically.

Run from the repository root: ``python tests/vectors/generate_vectors.py``. Every random input
comes from the DRBG below (seeded with a fixed label); ML-KEM encapsulation coins ``m`` come
from it too, through the independent pure-Python ML-KEM of ``mlkem_ref.py`` (``cryptography``
has no derandomized Encaps). The output is identical on every run.

Intermediate values are captured by wrapping (not replacing) the library's KDF functions.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))

import mlkem_ref  # noqa: E402

import clientlib.session.ratchet as ratchet_mod  # noqa: E402
import clientlib.session.sealed as sealed_mod  # noqa: E402
import clientlib.session.session as session_mod  # noqa: E402
from clientlib.crypto import kdf, primitives  # noqa: E402
from clientlib.crypto.fingerprint import identity_fingerprint, qr_payload, safety_number  # noqa: E402
from clientlib.crypto.franking import commitment_input, franking_commit  # noqa: E402
from clientlib.crypto.keys import IdentityKeyPair, MLKEMPublicKey, X25519KeyPair  # noqa: E402
from clientlib.crypto.padding import pad  # noqa: E402
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair  # noqa: E402
from clientlib.session import PreKeyBundle, Session, accept, initiate, open_envelope  # noqa: E402
from clientlib.session.handshake import initiator_handshake  # noqa: E402
from clientlib.wire.limits import ENVELOPE_BUCKETS  # noqa: E402

OUT = HERE / "crypto-v1.json"


def h(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


class DRBG:
    """``block_i = SHA-256("blindrelay/v1/test-drbg" || seed || u64be(i))``, concatenated."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.counter = 0
        self.buf = b""
        self.log: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += hashlib.sha256(
                b"blindrelay/v1/test-drbg" + self.seed + struct.pack(">Q", self.counter)
            ).digest()
            self.counter += 1
        out, self.buf = self.buf[:n], self.buf[n:]
        self.log.append(out)
        return out

    def take(self) -> list[str]:
        out = [x.hex() for x in self.log]
        self.log = []
        return out


class Tap:
    """Record calls of a module-level function while delegating to it."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name = module, name
        self.orig: Callable[..., Any] = getattr(module, name)
        self.calls: list[tuple[tuple[Any, ...], Any]] = []

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = self.orig(*args, **kwargs)
            self.calls.append((args + tuple(kwargs.values()), result))
            return result

        setattr(module, name, wrapper)

    def take(self) -> list[tuple[tuple[Any, ...], Any]]:
        out, self.calls = self.calls, []
        return out


def ref_encapsulate(rng: DRBG) -> Callable[[MLKEMPublicKey], tuple[bytes, bytes]]:
    def encapsulate(pk: MLKEMPublicKey) -> tuple[bytes, bytes]:
        m = rng(32)
        key, ct = mlkem_ref.encaps(bytes(pk), m)
        return key, ct

    return encapsulate


# --- primitive KDF vectors ----------------------------------------------------------------


def kdf_vectors(rng: DRBG) -> dict[str, Any]:
    out: dict[str, Any] = {"kdf_root": [], "kdf_chain": [], "kdf_message_keys": [], "hkdf": []}
    for _ in range(3):
        rk, dh = rng(32), rng(32)
        new_rk, ck = kdf.kdf_root(rk, dh)
        out["kdf_root"].append(
            {"root_key": h(rk), "dh_output": h(dh), "new_root_key": h(new_rk), "chain_key": h(ck)}
        )
        ck_next, mk = kdf.kdf_chain(ck)
        out["kdf_chain"].append({"chain_key": h(ck), "next_chain_key": h(ck_next), "message_key": h(mk)})
        key, nonce = kdf.kdf_message_keys(mk)
        out["kdf_message_keys"].append({"message_key": h(mk), "aead_key": h(key), "aead_nonce": h(nonce)})
    for label in (kdf.PQXDH_INFO, kdf.RATCHET_ROOT_INFO, kdf.SEALED_STATIC_INFO):
        ikm, salt = rng(48), rng(32)
        out["hkdf"].append(
            {
                "ikm": h(ikm),
                "salt": h(salt),
                "info": h(label),
                "length": 64,
                "okm": h(primitives.hkdf(ikm, salt=salt, info=label, length=64)),
            }
        )
    return out


# --- parties ------------------------------------------------------------------------------


class Bob:
    def __init__(self, rng: DRBG) -> None:
        self.identity = IdentityKeyPair.generate(rng)
        self.spk = PreKeyPair.generate(self.identity, PreKeyKind.X25519_SIGNED, 1, rng)
        self.kem_ot = PreKeyPair.generate(self.identity, PreKeyKind.MLKEM_ONE_TIME, 100, rng)
        self.kem_lr = PreKeyPair.generate(self.identity, PreKeyKind.MLKEM_LAST_RESORT, 0xFFFFFFFF, rng)
        self.opk = PreKeyPair.generate(self.identity, PreKeyKind.X25519_ONE_TIME, 200, rng)

    def describe(self) -> dict[str, Any]:
        return {
            "identity_seed": h(self.identity.private_bytes()),
            "identity_public": h(bytes(self.identity.public)),
            "identity_x25519_public": h(self.identity.public.x25519),
            "signed_prekey": self._pk(self.spk),
            "kem_one_time_prekey": self._pk(self.kem_ot),
            "kem_last_resort_prekey": self._pk(self.kem_lr),
            "one_time_prekey": self._pk(self.opk),
        }

    @staticmethod
    def _pk(p: PreKeyPair) -> dict[str, Any]:
        return {
            "kind": int(p.kind),
            "key_id": p.key_id,
            "private": h(p.keypair.private_bytes()),
            "public": h(bytes(p.keypair.public)),
            "record": h(p.public_record.raw),
        }

    def bundle(self, opk: bool, kem_one_time: bool) -> PreKeyBundle:
        return PreKeyBundle.build(
            self.identity.public,
            self.spk.public_record,
            (self.kem_ot if kem_one_time else self.kem_lr).public_record,
            self.opk.public_record if opk else None,
        )


def handshake_vectors(rng: DRBG, bob: Bob) -> list[dict[str, Any]]:
    cases = []
    for opk, kem_ot in ((True, True), (False, True), (False, False)):
        alice = IdentityKeyPair.generate(rng)
        bundle = bob.bundle(opk, kem_ot)
        rng.take()
        tap = Tap(kdf, "transcript_hash")
        import clientlib.session.handshake as hs_mod

        hs_mod.transcript_hash = kdf.transcript_hash  # route through the tap
        res = initiator_handshake(alice, bundle, rng=rng, encapsulate=ref_encapsulate(rng))
        draws = rng.take()
        setattr(kdf, "transcript_hash", tap.orig)
        hs_mod.transcript_hash = tap.orig
        ek = X25519KeyPair(bytes.fromhex(draws[0]))
        spk = bytes(bundle.signed_prekey.public)
        dhs = [alice.dh(spk), ek.dh(bob.identity.public.x25519), ek.dh(spk)]
        if opk:
            dhs.append(ek.dh(bytes(bob.opk.keypair.public)))
        kem_pair = bob.kem_ot if kem_ot else bob.kem_lr
        header = res.header
        ct = header[46:]
        ss = kem_pair.keypair.decapsulate(ct)  # type: ignore[union-attr]
        cases.append(
            {
                "note": f"one-time X25519 prekey: {opk}; ML-KEM prekey: "
                + ("one-time" if kem_ot else "last-resort"),
                "alice_identity_seed": h(alice.private_bytes()),
                "alice_identity_public": h(bytes(alice.public)),
                "alice_identity_x25519_private": h(primitives.ed25519_seed_to_x25519(alice.private_bytes())),
                "alice_identity_x25519_public": h(alice.public.x25519),
                "bundle": h(bundle.to_bytes()),
                "ephemeral_private": draws[0],
                "ephemeral_public": h(bytes(ek.public)),
                "kem_encaps_m": draws[1],
                "kem_ciphertext": h(ct),
                "kem_shared_secret": h(ss),
                "dh": [h(x) for x in dhs],
                "prekey_header": h(header),
                "transcript_hash_input": h(kdf.PQXDH_TRANSCRIPT_CONTEXT + b"".join(tap.calls[0][0])),
                "transcript_hash": h(res.th),
                "ikm": h(kdf.PQXDH_PAD + b"".join(dhs) + ss),
                "sk": h(res.sk),
            }
        )
    return cases


def conversation(rng: DRBG, bob: Bob) -> dict[str, Any]:
    alice = IdentityKeyPair.generate(rng)
    bundle = bob.bundle(True, True)
    rng.take()
    taps = {
        "root": Tap(ratchet_mod, "kdf_root"),
        "chain": Tap(ratchet_mod, "kdf_chain"),
        "mkeys": Tap(session_mod, "kdf_message_keys"),
        "aead": Tap(session_mod, "aead_encrypt"),
        "pad": Tap(session_mod, "pad"),
        "s_eph": Tap(sealed_mod, "kdf_sealed_ephemeral"),
        "s_static": Tap(sealed_mod, "kdf_sealed_static"),
    }
    script = [
        ("alice", b"hello bob", ()),
        ("alice", b"second, still a prekey message", ()),
        ("bob", b"hi alice", ()),
        ("alice", b"m0", ()),
        ("alice", b"m1", ()),
        ("alice", b"m2", ()),
        ("bob", b"two attachments", (hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest())),
        ("alice", bytes(range(256)) * 4, ()),
    ]
    deliveries = [5, 3, 6, 4, 7]
    messages: list[dict[str, Any]] = []
    sessions: dict[str, Session] = {}
    sent: list[tuple[str, bytes, bytes]] = []
    now = 1_800_000_000
    for idx, (who, pt, atts) in enumerate(script):
        for t in taps.values():
            t.take()
        if idx == 0:
            s, env = initiate(alice, bundle, pt, rng=rng, now=now, attachment_hashes=atts,
                              encapsulate=ref_encapsulate(rng))
            sessions["alice"] = s
        else:
            env = sessions[who].encrypt(pt, rng=rng, now=now, attachment_hashes=atts)
        draws = rng.take()
        inter: dict[str, Any] = {}
        roots = taps["root"].take()
        if roots:
            (rk_in, dh_out), (rk_out, ck) = roots[-1]
            inter["dh_step"] = {"root_key": h(rk_in), "dh_output": h(dh_out), "new_root_key": h(rk_out),
                                "sending_chain_key": h(ck)}
        (ck_in,), (ck_out, mk) = taps["chain"].take()[-1]
        (mk_in,), (key, nonce) = taps["mkeys"].take()[-1]
        assert mk_in == mk
        (padded_args, padded) = taps["pad"].take()[-1]
        aeads = taps["aead"].take()
        (_k, _n, _pt, ad), inner_ct = aeads[-1]
        inner = ad[64:] + inner_ct
        (dh_e, _r, eph), (k1, n1) = taps["s_eph"].take()[-1]
        (_dhe, dh_s, _r2, _e2, enc_static), (k2, n2) = taps["s_static"].take()[-1]
        inter.update(
            {
                "chain_key": h(ck_in),
                "next_chain_key": h(ck_out),
                "message_key": h(mk),
                "aead_key": h(key),
                "aead_nonce": h(nonce),
                "body": h(padded_args[0]),
                "padded_body": h(padded),
                "aead_ad": h(ad),
                "inner": h(inner),
                "sealed_dh_e": h(dh_e),
                "sealed_dh_s": h(dh_s),
                "sealed_k1": h(k1),
                "sealed_n1": h(n1),
                "sealed_k2": h(k2),
                "sealed_n2": h(n2),
            }
        )
        messages.append(
            {
                "from": who,
                "now": now,
                "plaintext": h(pt),
                "attachment_hashes": [h(a) for a in atts],
                "rng": draws,
                "ct": h(env.ct),
                "fc": h(env.fc),
                "intermediate": inter,
            }
        )
        sent.append((who, env.ct, env.fc))
        if idx == 0:
            opened = open_envelope(bob.identity, env.ct)
            acc = accept(bob.identity, opened, env.fc, signed_prekey=bob.spk, kem_prekey=bob.kem_ot,
                         one_time_prekey=bob.opk, now=now)
            sessions["bob"] = acc.session
            sessions["_bob_first"] = acc.session
        if idx == 1:
            sessions["bob"].receive(env.ct, env.fc, identity=bob.identity, now=now)
        if idx == 2:
            sessions["alice"].receive(env.ct, env.fc, identity=alice, now=now)
        now += 7
    for t in taps.values():
        setattr(t.module, t.name, t.orig)
    return {
        "note": "Alice initiates from the full bundle (one-time X25519 and one-time ML-KEM "
        "prekeys). Phase 1: the messages are sent in order, each sender's rng returning the "
        "listed draws; messages 0, 1 and 2 are delivered right after being sent (0 through "
        "accept, 1 to Bob's new session, 2 to Alice). Phase 2: the remaining messages are "
        "delivered in the order of 'deliveries' (out of order, across a DH ratchet step); "
        "every delivery yields the listed plaintext.",
        "alice_identity_seed": h(alice.private_bytes()),
        "bundle": h(bundle.to_bytes()),
        "messages": messages,
        "deliveries": deliveries,
    }


def sealed_and_invalid(rng: DRBG, bob: Bob, conv: dict[str, Any]) -> dict[str, Any]:
    """Invalid cases against the conversation: delivered after ``after`` deliveries."""
    msgs = conv["messages"]
    invalid = []

    def flip(hexs: str, i: int) -> str:
        b = bytearray(bytes.fromhex(hexs))
        b[i] ^= 0x01
        return b.hex()

    m3 = msgs[3]
    ct = m3["ct"]
    invalid += [
        {"note": "sealed version byte 0x00 (reserved)", "to": "bob", "ct": "00" + ct[2:], "fc": m3["fc"], "after": 3},
        {"note": "flipped bit in the sealed-sender ephemeral E", "to": "bob", "ct": flip(ct, 5), "fc": m3["fc"], "after": 3},
        {"note": "flipped bit in enc_static", "to": "bob", "ct": flip(ct, 40), "fc": m3["fc"], "after": 3},
        {"note": "flipped bit in the inner ciphertext", "to": "bob", "ct": flip(ct, 200), "fc": m3["fc"], "after": 3},
        {"note": "flipped bit in the Poly1305 tag", "to": "bob", "ct": flip(ct, 255), "fc": m3["fc"], "after": 3},
        {"note": "length not an envelope bucket (one byte short)", "to": "bob", "ct": ct[:-2], "fc": m3["fc"], "after": 3},
        {"note": "franking commitment does not match the plaintext", "to": "bob", "ct": ct, "fc": flip(m3["fc"], 0), "after": 3},
        {"note": "franking commitment missing", "to": "bob", "ct": ct, "fc": None, "after": 3},
        {"note": "envelope for Bob delivered to Alice (wrong recipient key)", "to": "alice", "ct": ct, "fc": m3["fc"], "after": 3},
        {"note": "duplicate: message 2 delivered a second time", "to": "alice", "ct": msgs[2]["ct"], "fc": msgs[2]["fc"], "after": 3},
        {"note": "duplicate prekey message 0 (same handshake) after the session exists", "to": "bob", "ct": msgs[0]["ct"], "fc": msgs[0]["fc"], "after": 3},
        {"note": "ephemeral E replaced by a small-order point (u = 0)", "to": "bob", "ct": "01" + "00" * 32 + ct[66:], "fc": m3["fc"], "after": 3},
    ]
    # A sealed envelope by a third party (Carol) for Bob: decrypts at the sealed layer, but its
    # sender is not the peer of Bob's session with Alice.
    carol = IdentityKeyPair.generate(rng)
    from clientlib.session.sealed import seal

    inner = bytes.fromhex(m3["intermediate"]["inner"])
    carol_ct = seal(inner, sender=carol.public, dh_s=carol.dh(bob.identity.public.x25519),
                    recipient=bob.identity.public, rng=rng)
    rng.take()
    invalid.append({"note": "Alice's inner message re-sealed by Carol: sender does not match the session",
                    "to": "bob", "ct": carol_ct.hex(), "fc": m3["fc"], "after": 3})
    return {"session_messages": invalid}


def padding_vectors() -> dict[str, Any]:
    cases = []
    overhead = session_mod.MESSAGE_OVERHEAD
    for bucket in ENVELOPE_BUCKETS:
        for n in (bucket - overhead - 4 - 1, bucket - overhead - 4, bucket - overhead - 3):
            if overhead + 4 + n > ENVELOPE_BUCKETS[-1]:
                continue
            padded = pad(b"\xaa" * n, overhead=overhead, buckets=ENVELOPE_BUCKETS)
            cases.append({"overhead": overhead, "data_length": n, "padded_length": len(padded),
                          "envelope_length": overhead + len(padded)})
    return {"overhead_ratchet": session_mod.MESSAGE_OVERHEAD,
            "overhead_prekey": session_mod.PREKEY_MESSAGE_OVERHEAD,
            "body_fixed": 34,
            "cases": cases,
            "example": {"data": h(b"abc"), "overhead": overhead,
                        "padded": h(pad(b"abc", overhead=overhead, buckets=ENVELOPE_BUCKETS))}}


def franking_vectors(rng: DRBG) -> list[dict[str, Any]]:
    out = []
    for atts in ((), (hashlib.sha256(b"photo").digest(),)):
        fk, s, r = rng(32), rng(32), rng(32)
        msg = b"report me"
        out.append({"franking_key": h(fk), "sender": h(s), "recipient": h(r), "message": h(msg),
                    "attachment_hashes": [h(a) for a in atts],
                    "commitment_input": h(commitment_input(s, r, msg, atts)),
                    "commitment": h(franking_commit(fk, sender=s, recipient=r, message=msg,
                                                    attachment_hashes=atts))})
    return out


def safety_vectors(rng: DRBG) -> list[dict[str, Any]]:
    a = IdentityKeyPair.generate(rng).public
    b = IdentityKeyPair.generate(rng).public
    return [{"identity_a": h(bytes(a)), "identity_b": h(bytes(b)),
             "fingerprint_a": h(identity_fingerprint(a)), "fingerprint_b": h(identity_fingerprint(b)),
             "safety_number": safety_number(a, b), "qr_payload": h(qr_payload(a, b))}]


def invalid_static() -> dict[str, Any]:
    p = 2**255 - 19
    return {
        "x25519_public": [
            {"key": "00" * 32, "note": "all zero (small order)"},
            {"key": (1).to_bytes(32, "little").hex(), "note": "u = 1 (small order)"},
            {"key": "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", "note": "order 8"},
            {"key": (p - 1).to_bytes(32, "little").hex(), "note": "u = p - 1 (small order)"},
            {"key": p.to_bytes(32, "little").hex(), "note": "u = p, non-canonical"},
            {"key": (2**255 + 9).to_bytes(32, "little").hex(), "note": "top bit set"},
            {"key": "09" + "00" * 30, "note": "31 bytes"},
        ],
        "ed25519_public": [
            {"key": "01" + "00" * 31, "note": "neutral element (small order)"},
            {"key": "ec" + "ff" * 30 + "7f", "note": "y = -1, order 2"},
            {"key": "ed" + "ff" * 30 + "7f", "note": "y = p, non-canonical"},
            {"key": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", "note": "order 8"},
        ],
        "padding": [
            {"padded": "00000010" + "00" * 8, "note": "length beyond the input"},
            {"padded": "00000001" + "61" + "00" * 6 + "01", "note": "non-zero padding byte"},
            {"padded": "000000", "note": "shorter than the length prefix"},
        ],
    }


def invalid_bundles(bob: Bob) -> list[dict[str, Any]]:
    good = bob.bundle(True, True).to_bytes()
    b = bytearray(good)
    b[40] ^= 1
    swapped = (bytes((1,)) + bytes(bob.identity.public) + b"\x00" + bob.opk.public_record.raw
               + bob.kem_ot.public_record.raw)
    return [
        {"bundle": "00" + good.hex()[2:], "note": "version 0 (reserved)"},
        {"bundle": bytes(b).hex(), "note": "signed prekey public key altered (signature fails)"},
        {"bundle": good.hex()[:66] + "03" + good.hex()[68:], "note": "unknown flag bit"},
        {"bundle": good.hex()[:-2], "note": "truncated"},
        {"bundle": swapped.hex(), "note": "one-time prekey record in the signed prekey slot"},
    ]


def main() -> None:
    rng = DRBG(b"crypto-v1")
    kdfs = kdf_vectors(rng)
    bob = Bob(rng)
    rng.take()
    hs = handshake_vectors(rng, bob)
    conv = conversation(rng, bob)
    inval = sealed_and_invalid(rng, bob, conv)
    doc = {
        "v1": {
            "drbg": "block_i = SHA-256('blindrelay/v1/test-drbg' || seed || u64be(i)); seed = 'crypto-v1'",
            "valid": {
                **kdfs,
                "bob": bob.describe(),
                "handshake": hs,
                "conversation": conv,
                "padding": padding_vectors(),
                "franking": franking_vectors(rng),
                "safety_number": safety_vectors(rng),
            },
            "invalid": {**inval, **invalid_static(), "bundle": invalid_bundles(bob)},
        }
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
