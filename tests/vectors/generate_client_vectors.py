"""Generate ``client-v1.json``: vectors for protocol.md Part III (invitations, hosted address
bundles, conversation content). Deterministic: every random byte comes from the DRBG of
``generate_vectors.py`` seeded with ``"client-v1"``.

Run: ``python tests/vectors/generate_client_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from generate_vectors import DRBG  # noqa: E402

from clientlib.client._book import AddressBook  # noqa: E402
from clientlib.client.config import DEFAULT_BOUNDARIES  # noqa: E402
from clientlib.client.content import (  # noqa: E402
    Accept,
    ContactRequestContent,
    ConversationSettings,
    DisappearTimer,
    EditMessage,
    Reaction,
    Receipt,
    TextMessage,
    Typing,
    Unsend,
)
from clientlib.client.invite import (  # noqa: E402
    Invitation,
    _bundle_key,
    identity_hash,
    seal_item,
    seal_static,
)
from clientlib.crypto.keys import IdentityKeyPair  # noqa: E402
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair  # noqa: E402
from clientlib.crypto.primitives import hkdf  # noqa: E402
from clientlib.keystore.file import FileKeystore  # noqa: E402
from clientlib.wire.pow import (  # noqa: E402
    capability_hash,
    leading_zero_bits,
    pow_digest,
    recall_hash,
    solve,
)

OUT = HERE / "client-v1.json"


def build() -> dict[str, Any]:
    rng = DRBG(b"client-v1")
    sid = rng(16)
    k = rng(32)
    inv = Invitation("https://relay.example.org", sid, k)
    ik = IdentityKeyPair(rng(32))
    spk = PreKeyPair.generate(ik, PreKeyKind.X25519_SIGNED, 1, rng)
    lr = PreKeyPair.generate(ik, PreKeyKind.MLKEM_LAST_RESORT, 2, rng)
    kem = PreKeyPair.generate(ik, PreKeyKind.MLKEM_ONE_TIME, 3, rng)
    opk = PreKeyPair.generate(ik, PreKeyKind.X25519_ONE_TIME, 3, rng)
    static_nonce = rng(24)
    static = seal_static(
        k, sid, ik.public, spk.public_record, lr.public_record, lambda n: static_nonce
    )
    item_nonce = rng(24)
    item = seal_item(k, sid, kem.public_record, opk.public_record, lambda n: item_nonce)
    reply = rng(16)
    mid = rng(16)
    cap = rng(32)
    contents = [
        ("req", ContactRequestContent(reply=reply, cap=cap, name="Alex", intro="Hi! We met at the meetup.")),
        ("req-minimal", ContactRequestContent(reply=reply, cap=cap)),
        # Revision 11 (protocol.md §27.1): the reply mailbox is on another relay than the
        # address; no new DRBG draw.
        ("req-relay", ContactRequestContent(reply=reply, cap=cap, name="Alex",
                                            relay="https://relay-b.example.org")),  # fmt: skip
        ("acc", Accept(reply=reply, cap=cap, name="Sam")),
        ("msg", TextMessage(id=mid, ts=1_795_000_000, text="hello ✓")),
        ("set", ConversationSettings(receipts=0, typing=1, media=0)),
        # Issue 13 (protocol.md §22.10-§22.13); ids derived from mid, no new DRBG draws.
        ("set-delivery", ConversationSettings(receipts=1, typing=1, media=1, delivery=0)),
        ("msg-disappearing", TextMessage(id=mid, ts=1_795_000_000, text="bye", exp=3600,
                                         dlv=(reply,), rd=(mid[::-1],))),  # fmt: skip
        ("rcp", Receipt(dlv=(reply, mid[::-1]), rd=(mid,))),
        ("rcp-read", Receipt(rd=(mid,))),
        ("typ", Typing(on=1)),
        ("typ-stop", Typing(on=0)),
        ("dis", DisappearTimer(secs=86400, v=3)),
        ("dis-off", DisappearTimer(secs=0, v=4)),
        ("del", Unsend(ref=mid)),
        ("edit", EditMessage(ref=mid, ts=1_795_000_060, text="hello, edited")),
        ("rx", Reaction(ref=mid, mine=0, emoji="👍")),
        ("rx-remove", Reaction(ref=mid, mine=1, emoji="")),
    ]
    return {
        "client-v1": {
            "invitation": {
                "relay_url": inv.relay_url,
                "sid": sid.hex(),
                "k": k.hex(),
                "link": inv.link,
            },
            # Link version 2 (protocol.md §21.2): the same address, committing to the
            # address_bundle's identity key: h = SHA-256(label || 0x00 || IK)[0:16].
            "invitation_v2": {
                "relay_url": inv.relay_url,
                "sid": sid.hex(),
                "k": k.hex(),
                "identity": bytes(ik.public).hex(),
                "identity_hash": identity_hash(ik.public).hex(),
                "link": Invitation.for_identity(inv.relay_url, sid, k, ik.public).link,
            },
            # Link version 3 (revision 11, protocol.md §21.2, §27.3): version 2 plus
            # hr = SHA-256("blindrelay/v1/relay-identity" || 0x00 || ri)[0:16] of the relay's
            # identity key ri (here a fixed example value; no DRBG draw).
            "invitation_v3": _invitation_v3(inv.relay_url, sid, k, ik),
            "address_bundle": {
                "k": k.hex(),
                "sid": sid.hex(),
                "kb": _bundle_key(k).hex(),
                "identity_seed": ik.private_bytes().hex(),
                "identity": bytes(ik.public).hex(),
                "static_plaintext": (
                    bytes(ik.public) + spk.public_record.raw + lr.public_record.raw
                ).hex(),
                "static_nonce": static_nonce.hex(),
                "static": static.hex(),
                "item_plaintext": (kem.public_record.raw + opk.public_record.raw).hex(),
                "item_nonce": item_nonce.hex(),
                "item": item.hex(),
            },
            "content": [{"name": name, "encoded": c.encode().hex()} for name, c in contents],
            **revision_6(),
        }
    }


def _invitation_v3(relay_url: str, sid: bytes, k: bytes, ik: Any) -> dict[str, Any]:
    ri = hashlib.sha256(b"route-v1 example relay identity").digest()
    inv = Invitation.for_identity(relay_url, sid, k, ik.public).pinning_relay(ri)
    assert inv.relay_hash is not None and inv.identity_hash is not None
    return {
        "relay_url": relay_url,
        "sid": sid.hex(),
        "k": k.hex(),
        "identity": bytes(ik.public).hex(),
        "identity_hash": inv.identity_hash.hex(),
        "relay_identity": ri.hex(),
        "relay_hash": inv.relay_hash.hex(),
        "link": inv.link,
    }


def revision_6() -> dict[str, Any]:
    """Vectors added in protocol.md revision 6 (issue 22 items 10 and 20), from their own
    DRBG so that every earlier value above is unchanged."""
    rng = DRBG(b"client-v1/rev6")
    seed, address_sid = rng(32), rng(16)
    book = AddressBook(rng=rng, boundaries=DEFAULT_BOUNDARIES)
    book._identity = IdentityKeyPair(seed)
    hk = hkdf(seed, salt=bytes(32), info=b"blindrelay/v1/handle-key", length=32)
    pair_sid, cap = rng(16), rng(32)
    pow_sid, nonce, eid, bits = rng(16), rng(16), rng(16), 12
    counter = solve(pow_sid, nonce, eid, bits)
    digest = pow_digest(pow_sid, nonce, eid, counter)
    return {
        "handle": {
            "identity_seed": seed.hex(),
            "address_sid": address_sid.hex(),
            "hk": hk.hex(),
            "hdl": book.handle(address_sid).hex(),
        },
        "capability_hash": {
            "sid": pair_sid.hex(),
            "cap": cap.hex(),
            "h": capability_hash(pair_sid, cap).hex(),
        },
        "pow": {
            "sid": pow_sid.hex(),
            "nonce": nonce.hex(),
            "eid": eid.hex(),
            "bits": bits,
            "counter": counter,
            "digest": digest.hex(),
            "leading_zero_bits": leading_zero_bits(digest),
            "digest_counter_0": pow_digest(pow_sid, nonce, eid, 0).hex(),
            "note": "counter is the smallest that meets bits (the reference solver counts "
            "up from 0); any counter meeting bits is valid",
        },
        "keystore": keystore_vector(rng),
        "recall_hash": recall_vector(DRBG(b"client-v1/rev15")),
    }


def recall_vector(rng: DRBG) -> dict[str, Any]:
    """protocol.md §5.10 (revision 15): rc = SHA-256("blindrelay/v1/recall" || 0x00 || rs)."""
    rs = rng(32)
    return {"rs": rs.hex(), "rc": recall_hash(rs).hex()}


def keystore_vector(rng: DRBG) -> dict[str, Any]:
    """One keystore file (protocol.md §23.4), at Argon2id's minimum cost so that checking it
    is fast; opening accepts any cost within the format's bounds."""
    import os
    import tempfile

    os.environ["CLIENTLIB_INSECURE_TEST_KDF"] = "1"  # the minimum cost, for the vector only
    passphrase = b"vector: correct horse battery staple"
    entries = {"meta": {b"state-version": b"\x01"}, "identity": {b"seed": rng(32)}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vector.keystore"
        draws: list[bytes] = []
        # create() also writes the unused duress slot file (protocol.md §24.2: random bytes,
        # not part of this vector). Its draws come from a DRBG of their own, so that the
        # vector's draws stay what the note says and the committed file is reproduced.
        slot_rng = DRBG(b"client-v1/keystore-slot")

        def record(n: int) -> bytes:
            if sys._getframe(2).f_code.co_name == "_randomise_slot":  # record <- _draw <- it
                return slot_rng(n)
            out = rng(n)
            draws.append(out)
            return out

        ks = FileKeystore.create(path, passphrase, rng=record, opslimit=1, memlimit=8192)
        for ns, kv in entries.items():
            for k, v in kv.items():
                ks.put(ns, k, v)
        ks.save()
        ks.close()
        data = path.read_bytes()
    assert [len(d) for d in draws] == [16, 24, 24], "the keystore's draws changed"
    import msgpack
    from nacl.pwhash import argon2id

    salt, nonce = data[13:29], data[29:53]
    body = msgpack.packb({ns: dict(sorted(kv.items())) for ns, kv in sorted(entries.items())})
    return {
        "passphrase": passphrase.hex(),
        "opslimit": 1,
        "memlimit_kib": 8,
        "salt": salt.hex(),
        "nonce": nonce.hex(),
        "key": argon2id.kdf(32, passphrase, salt, opslimit=1, memlimit=8192).hex(),
        "body": body.hex(),
        "entries": {ns: {k.hex(): v.hex() for k, v in kv.items()} for ns, kv in entries.items()},
        "file": data.hex(),
        "note": "the rng draws of create and save: salt (16), then a nonce (24) at every save;"
        " the file is the last save",
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
