"""Generate ``amf-v1.json``: vectors for asymmetric message franking (docs/amf.md).
Deterministic: every random byte comes from the DRBG of ``generate_vectors.py`` seeded with
``"amf-v1"``; each signature records the 32 bytes its signer drew.

The signatures are made by the client (``clientlib.crypto.amf``); the moderator keys and the
judge's verdicts come from the relay (``relay.amf``); the generator re-derives every
intermediate (hedged scalars, ``E_J``, ``J``, the seven commitments, the challenge input and
``c``) from the formulas of docs/amf.md and checks that the implementations agree with them.
``tests/conformance/test_amf_vectors.py`` replays all of it against both implementations and
a third, spec-only path.

Run: ``python tests/vectors/generate_amf_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import nacl.bindings as nb  # noqa: E402
from generate_vectors import DRBG  # noqa: E402

from clientlib.crypto.amf import (  # noqa: E402
    AMF_CONTEXT,
    AMF_JUDGE_CONTEXT,
    AMF_NONCE_CONTEXT,
    ED25519_BASE,
    ED25519_ORDER,
    forge_as_recipient,
    frank,
    signature_parts,
    verify_as_recipient,
)
from clientlib.crypto.keys import IdentityKeyPair  # noqa: E402
from clientlib.errors import DecryptionError  # noqa: E402
from relay.amf import judge_key, verify_as_judge  # noqa: E402

OUT = HERE / "amf-v1.json"
L = ED25519_ORDER
B = ED25519_BASE


def h(b: bytes) -> str:
    return b.hex()


def h2s(data: bytes) -> bytes:
    return (int.from_bytes(hashlib.sha512(data).digest(), "little") % L).to_bytes(32, "little")


def secret_scalar(seed: bytes) -> bytes:
    d = bytearray(hashlib.sha512(seed).digest()[:32])
    d[0] &= 248
    d[31] &= 127
    d[31] |= 64
    return (int.from_bytes(d, "little") % L).to_bytes(32, "little")


def mul(k: bytes, p: bytes) -> bytes:
    if p == B:
        return nb.crypto_scalarmult_ed25519_base_noclamp(k)
    return nb.crypto_scalarmult_ed25519_noclamp(k, p)


def hedged(w: bytes, rnd: bytes, kid: int, snd: bytes, rcp: bytes, m: bytes, fc: bytes, n: int):
    seed = hashlib.sha512(
        AMF_NONCE_CONTEXT + w + rnd + struct.pack(">I", kid) + snd + rcp + m + fc
    ).digest()
    out = [h2s(seed + bytes((i,))) for i in range(n)]
    assert bytes(32) not in out  # the implementation skips zeros; none occur here
    return seed, out


def transcript(kid: int, snd: bytes, rcp: bytes, m: bytes, fc: bytes, sig: bytes):
    parts = signature_parts(sig)
    assert parts is not None
    ej, jj, s = parts
    pairs = [
        (s[0], s[1], B, snd),
        (s[2], s[3], B, jj),
        (s[4], s[5], B, snd),
        (s[6], s[7], B, rcp),
        (s[8], s[9], B, ej),
        (s[8], s[9], m, jj),
        (s[10], s[11], B, rcp),
    ]
    commitments = [nb.crypto_core_ed25519_sub(mul(z, base), mul(c, pub)) for c, z, base, pub in pairs]
    data = AMF_CONTEXT + struct.pack(">I", kid) + snd + rcp + m + ej + jj + fc + b"".join(commitments)
    return commitments, data, h2s(data)


def verdicts(snd: bytes, rcp: bytes, judge: Any, kid: int, fc: bytes, sig: bytes) -> dict[str, bool]:
    try:
        verify_as_recipient(snd, rcp, judge.public, kid, fc, sig)
        recipient = True
    except DecryptionError:
        recipient = False
    return {"recipient": recipient, "judge": verify_as_judge(judge, snd, rcp, kid, fc, sig)}


def build() -> dict[str, Any]:
    rng = DRBG(b"amf-v1")
    franking_keys = {1: rng(32), 2: rng(32)}
    judges = {kid: judge_key(k) for kid, k in franking_keys.items()}
    seeds = {name: rng(32) for name in ("alice", "bob", "carol")}
    ids = {name: IdentityKeyPair(seed) for name, seed in seeds.items()}
    pub = {name: bytes(i.public) for name, i in ids.items()}
    for name, seed in seeds.items():
        assert mul(secret_scalar(seed), B) == pub[name]

    def record(draws: list[bytes]):
        def inner(n: int) -> bytes:
            out = rng(n)
            draws.append(out)
            return out

        return inner

    signatures = []
    for name, snd, rcp, kid in (
        ("alice to bob, kid 1", "alice", "bob", 1),
        ("alice to bob, kid 2", "alice", "bob", 2),
        ("bob to alice, kid 2", "bob", "alice", 2),
        ("carol to bob, kid 1", "carol", "bob", 1),
    ):
        fc = rng(32)
        judge = judges[kid]
        draws: list[bytes] = []
        sig = frank(ids[snd], pub[snd], pub[rcp], judge.public, kid, fc, rng=record(draws))
        assert len(draws) == 1
        s = secret_scalar(seeds[snd])
        seed, sc = hedged(s, draws[0], kid, pub[snd], pub[rcp], judge.public, fc, 10)
        alpha, k_a, c_a1, z_a1, k_b, c_b1, z_b1, k_c, c_c1, z_c1 = sc
        parts = signature_parts(sig)
        assert parts is not None
        ej, jj, scal = parts
        assert ej == mul(alpha, B) and jj == mul(alpha, judge.public)
        assert mul(judge.secret, ej) == jj
        assert (scal[2], scal[3], scal[6], scal[7], scal[10], scal[11]) == (
            c_a1, z_a1, c_b1, z_b1, c_c1, z_c1
        )
        commitments, data, c = transcript(kid, pub[snd], pub[rcp], judge.public, fc, sig)
        # The real branches' commitments are the nonces' multiples.
        assert commitments[0] == mul(k_a, B) and commitments[2] == mul(k_b, B)
        assert commitments[4] == mul(k_c, B) and commitments[5] == mul(k_c, judge.public)
        assert verdicts(pub[snd], pub[rcp], judge, kid, fc, sig) == {"recipient": True, "judge": True}
        signatures.append(
            {
                "name": name,
                "sender": snd,
                "recipient": rcp,
                "kid": kid,
                "fc": h(fc),
                "rng": h(draws[0]),
                "sender_scalar": h(s),
                "nonce_seed": h(seed),
                "scalars": [h(x) for x in sc],
                "E_J": h(ej),
                "J": h(jj),
                "commitments": [h(x) for x in commitments],
                "challenge_input": h(data),
                "c": h(c),
                "sig": h(sig),
                "expect": {"recipient": True, "judge": True},
            }
        )

    # --- Bob's deniability forgery of a signature "from" Alice --------------------------
    fc = rng(32)
    draws = []
    forged = forge_as_recipient(ids["bob"], pub["alice"], judges[1].public, 1, fc, rng=record(draws))
    r = secret_scalar(seeds["bob"])
    seed, sc = hedged(r, draws[0], 1, pub["alice"], pub["bob"], judges[1].public, fc, 11)
    parts = signature_parts(forged)
    assert parts is not None
    assert parts[0] == mul(sc[0], B) and parts[1] == mul(sc[1], B)
    commitments, data, c = transcript(1, pub["alice"], pub["bob"], judges[1].public, fc, forged)
    expect = {"recipient": True, "judge": False}
    assert verdicts(pub["alice"], pub["bob"], judges[1], 1, fc, forged) == expect
    forgery = {
        "name": "bob forges alice to bob, kid 1 (recipient-only, the judge refuses)",
        "sender": "alice",
        "recipient": "bob",
        "forger": "bob",
        "kid": 1,
        "fc": h(fc),
        "rng": h(draws[0]),
        "nonce_seed": h(seed),
        "scalars": [h(x) for x in sc],
        "commitments": [h(x) for x in commitments],
        "challenge_input": h(data),
        "c": h(c),
        "sig": h(forged),
        "expect": expect,
    }

    # --- negative cases over the first signature ------------------------------------------
    base = signatures[0]
    sig0, fc0 = bytes.fromhex(base["sig"]), bytes.fromhex(base["fc"])
    z0 = int.from_bytes(sig0[96:128], "little")
    alpha_bad = h2s(b"alpha for an unreportable attempt")
    gamma_bad = h2s(b"gamma for an unreportable attempt")

    def flip(i: int) -> bytes:
        out = bytearray(sig0)
        out[i // 8] ^= 1 << (i % 8)
        return bytes(out)

    invalid_raw: list[tuple[str, dict[str, Any]]] = [
        ("bit 0 of E_J flipped", {"sig": flip(0)}),
        ("z_C1 byte 31 bit 0 flipped", {"sig": flip(448 * 8 - 8)}),
        ("another kid", {"kid": 2}),
        ("another fc", {"fc": rng(32)}),
        ("sender and recipient swapped", {"sender": "bob", "recipient": "alice"}),
        ("another sender", {"sender": "carol"}),
        ("z_A0 + L (non-canonical scalar, same residue)",
         {"sig": sig0[:96] + (z0 + L).to_bytes(32, "little") + sig0[128:]}),
        ("c_A0 = 0", {"sig": sig0[:64] + bytes(32) + sig0[96:]}),
        ("E_J the identity (small order)", {"sig": bytes([1]) + bytes(31) + sig0[32:]}),
        ("J outside the prime-order subgroup", {"sig": sig0[:32] + nb.crypto_core_ed25519_add(
            sig0[32:64],
            bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
        ) + sig0[64:]}),
        ("truncated", {"sig": sig0[:-1]}),
    ]  # fmt: skip
    # The unreportable attempt (finding 2): J with a known log, clause A proven with it,
    # clause C's left branch "proven" with alpha although J != alpha*M.
    from clientlib.crypto.amf import PreparedFrank

    counter = [0]

    def draw() -> bytes:
        counter[0] += 1
        return h2s(b"unreportable attempt" + bytes((counter[0],)))

    attempt = PreparedFrank(
        kid=1,
        sender=pub["alice"],
        recipient=pub["bob"],
        moderator=judges[1].public,
        ej=mul(alpha_bad, B),
        jj=mul(gamma_bad, B),
        real=(1, 0, 0),
        witnesses=(gamma_bad, secret_scalar(seeds["alice"]), alpha_bad),
        draw=draw,
    ).sign(fc0)
    invalid_raw.append(("unreportable attempt (J with a known log, C faked)", {"sig": attempt}))

    invalid = []
    for name, change in invalid_raw:
        case = {
            "name": name,
            "sender": change.get("sender", base["sender"]),
            "recipient": change.get("recipient", base["recipient"]),
            "kid": change.get("kid", base["kid"]),
            "fc": h(change.get("fc", fc0)),
            "sig": h(change.get("sig", sig0)),
        }
        got = verdicts(
            pub[case["sender"]],
            pub[case["recipient"]],
            judges[case["kid"]],
            case["kid"],
            bytes.fromhex(case["fc"]),
            bytes.fromhex(case["sig"]),
        )
        assert got == {"recipient": False, "judge": False}, name
        case["expect"] = got
        invalid.append(case)

    return {
        "amf-v1": {
            "labels": {
                "amf": h(AMF_CONTEXT),
                "amf_judge": h(AMF_JUDGE_CONTEXT),
                "amf_nonce": h(AMF_NONCE_CONTEXT),
            },
            "group": {"order": str(L), "base": h(B)},
            "moderators": [
                {
                    "kid": kid,
                    "franking_key": h(franking_keys[kid]),
                    "j": h(judges[kid].secret),
                    "M": h(judges[kid].public),
                }
                for kid in (1, 2)
            ],
            "identities": {
                name: {"seed": h(seeds[name]), "scalar": h(secret_scalar(seeds[name])), "public": h(pub[name])}
                for name in seeds
            },
            "signatures": signatures,
            "forgeries": [forgery],
            "invalid": invalid,
        }
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
