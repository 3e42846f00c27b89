"""Generate tests/vectors/session-v2.json: body version 2 (AMF) session vectors (protocol.md
§12.4, §12.5, §15.5.8) deterministically.

Run from the repository root: ``python tests/vectors/generate_session_v2_vectors.py``. Every
random input comes from the DRBG of ``generate_vectors.py`` seeded with ``session-v2`` (ML-KEM
coins through ``mlkem_ref.py``); the relay's franking key too. The output is identical on every
run. Intermediates are captured by wrapping (not replacing) the library's functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))

from generate_vectors import DRBG, Bob, Tap, h, ref_encapsulate  # noqa: E402

import clientlib.session.ratchet as ratchet_mod  # noqa: E402
import clientlib.session.sealed as sealed_mod  # noqa: E402
import clientlib.session.session as session_mod  # noqa: E402
from clientlib.crypto.keys import IdentityKeyPair  # noqa: E402
from clientlib.session import ModeratorKey, Session, accept, initiate, open_envelope  # noqa: E402
from relay.amf import judge_key  # noqa: E402

OUT = HERE / "session-v2.json"
KID = 7


def main() -> None:
    rng = DRBG(b"session-v2")
    franking_key = rng(32)
    other_key = rng(32)
    judge, other = judge_key(franking_key), judge_key(other_key)
    mod = ModeratorKey(KID, judge.public)
    bob = Bob(rng)
    alice = IdentityKeyPair.generate(rng)
    bundle = bob.bundle(True, True)
    rng.take()
    ids = {"alice": alice, "bob": bob.identity}
    taps = {
        "root": Tap(ratchet_mod, "kdf_root"),
        "chain": Tap(ratchet_mod, "kdf_chain"),
        "mkeys": Tap(session_mod, "kdf_message_keys"),
        "aead": Tap(session_mod, "aead_encrypt"),
        "pad": Tap(session_mod, "pad"),
        "frank": Tap(session_mod, "frank"),
    }
    script = [
        ("alice", b"hello bob, franked"),
        ("alice", b"second, still a prekey message"),
        ("bob", b"hi alice"),
        ("alice", b"m0"),
        ("alice", b"m1"),
        ("bob", b"bob again, same chain"),
        ("alice", bytes(range(256)) * 2),
    ]
    deliveries = [4, 3, 6]
    messages: list[dict[str, Any]] = []
    sessions: dict[str, Session] = {}
    now = 1_800_000_000

    def lookup(kid: int) -> bytes | None:
        return judge.public if kid == KID else None

    for idx, (who, pt) in enumerate(script):
        for t in taps.values():
            t.take()
        if idx == 0:
            s, env = initiate(
                alice, bundle, pt, rng=rng, now=now, encapsulate=ref_encapsulate(rng), moderator=mod
            )
            sessions["alice"] = s
        else:
            env = sessions[who].encrypt(pt, rng=rng, now=now, identity=ids[who], moderator=mod)
        draws = rng.take()
        inter: dict[str, Any] = {}
        roots = taps["root"].take()
        if roots:
            (rk_in, dh_out), (rk_out, ck) = roots[-1]
            inter["dh_step"] = {
                "root_key": h(rk_in),
                "dh_output": h(dh_out),
                "new_root_key": h(rk_out),
                "sending_chain_key": h(ck),
            }
        (ck_in,), (ck_out, mk) = taps["chain"].take()[-1]
        (_mk,), (key, nonce) = taps["mkeys"].take()[-1]
        (padded_args, padded) = taps["pad"].take()[-1]
        (_k, _n, _pt, ad), inner_ct = taps["aead"].take()[-1]
        (_frank_args, sigma) = taps["frank"].take()[-1]
        body = padded_args[0]
        inter.update(
            {
                "chain_key": h(ck_in),
                "next_chain_key": h(ck_out),
                "message_key": h(mk),
                "aead_key": h(key),
                "aead_nonce": h(nonce),
                "sigma": h(sigma),
                "body": h(body),
                "padded_body": h(padded),
                "aead_ad": h(ad),
                "inner": h(ad[64:] + inner_ct),
            }
        )
        messages.append(
            {
                "from": who,
                "now": now,
                "plaintext": h(pt),
                "akid": KID,
                "rng": draws,
                "ct": h(env.ct),
                "fc": h(env.fc),
                "intermediate": inter,
            }
        )
        if idx == 0:
            opened = open_envelope(bob.identity, env.ct)
            acc = accept(
                bob.identity,
                opened,
                env.fc,
                signed_prekey=bob.spk,
                kem_prekey=bob.kem_ot,
                one_time_prekey=bob.opk,
                now=now,
                moderator_keys=lookup,
            )
            sessions["bob"] = acc.session
        if idx == 1:
            sessions["bob"].receive(
                env.ct, env.fc, identity=bob.identity, now=now, moderator_keys=lookup
            )
        if idx in (2, 5):
            sessions["alice"].receive(
                env.ct, env.fc, identity=alice, now=now, moderator_keys=lookup
            )
        now += 7
    for t in taps.values():
        setattr(t.module, t.name, t.orig)
    # Invalid: made by Alice after every message above, delivered to Bob once he has
    # received all of them; each must fail with Bob's session unchanged.
    invalid = []
    legacy = sessions["alice"].encrypt(b"body version 1", rng=rng, now=now)
    invalid.append(
        {
            "note": "body version 0x01 (no AMF signature) to a receiver with moderator keys",
            "rng": rng.take(),
            "ct": h(legacy.ct),
            "fc": h(legacy.fc),
        }
    )
    unknown = sessions["alice"].encrypt(
        b"franked under a kid Bob's relay does not publish",
        rng=rng,
        now=now,
        identity=alice,
        moderator=ModeratorKey(KID + 1, other.public),
    )
    invalid.append(
        {
            "note": "akid 8: not a key Bob's relay publishes (a valid proof for another M)",
            "rng": rng.take(),
            "ct": h(unknown.ct),
            "fc": h(unknown.fc),
        }
    )
    wrong_m = sessions["alice"].encrypt(
        b"sigma for another moderator key under akid 7",
        rng=rng,
        now=now,
        identity=alice,
        moderator=ModeratorKey(KID, other.public),
    )
    invalid.append(
        {
            "note": "akid 7 but sigma proves J for another moderator key (unreportable: "
            "issue 20, finding 2)",
            "rng": rng.take(),
            "ct": h(wrong_m.ct),
            "fc": h(wrong_m.fc),
        }
    )
    doc = {
        "session-v2": {
            "drbg": "block_i = SHA-256('blindrelay/v1/test-drbg' || seed || u64be(i)); "
            "seed = 'session-v2'; draws in order: franking key, second franking key, Bob's "
            "identity and prekeys (as in crypto-v1), Alice's identity, then per message",
            "note": "Body version 2 (protocol.md §12.4): every message is franked (AMF, "
            "§15.5) under Bob's and Alice's relay's moderator key kid 7. Per message the "
            "rng draws are, in order: (message 0 only: EK_A, the ML-KEM coins m, the first "
            "ratchet key), fk, the AMF hedge rnd, (a new ratchet key on a DH step), the "
            "sealed-sender ephemeral. Phase 1: messages are sent in order; 0 is delivered "
            "through accept, 1 to Bob, 2 and 5 to Alice right after being sent. Phase 2: the "
            "rest are delivered in the order of 'deliveries'; every delivery yields the "
            "listed plaintext, with the listed sigma and akid. Then every 'invalid' envelope "
            "(made by Alice after all of them) fails at Bob with his session unchanged.",
            "moderator": {
                "kid": KID,
                "franking_key": h(franking_key),
                "j": h(judge.secret),
                "M": h(judge.public),
            },
            "other_moderator": {
                "kid": KID + 1,
                "franking_key": h(other_key),
                "j": h(other.secret),
                "M": h(other.public),
            },
            "bob": bob.describe(),
            "alice_identity_seed": h(alice.private_bytes()),
            "alice_identity_public": h(bytes(alice.public)),
            "bundle": h(bundle.to_bytes()),
            "messages": messages,
            "deliveries": deliveries,
            "invalid": invalid,
            "layout": {
                "body_v2": "0x02 || fk(32) || u32be(akid) || sigma(448) || u8(n_att) || "
                "hashes || plaintext",
                "fixed_prefix": 1 + 32 + 4 + 448 + 1,
            },
        }
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
