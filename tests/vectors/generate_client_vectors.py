"""Generate ``client-v1.json``: vectors for protocol.md Part III (invitations, hosted address
bundles, conversation content). Deterministic: every random byte comes from the DRBG of
``generate_vectors.py`` seeded with ``"client-v1"``.

Run: ``python tests/vectors/generate_client_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from generate_vectors import DRBG  # noqa: E402

from clientlib.client.content import (  # noqa: E402
    Accept,
    ContactRequestContent,
    ConversationSettings,
    TextMessage,
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
        ("acc", Accept(reply=reply, cap=cap, name="Sam")),
        ("msg", TextMessage(id=mid, ts=1_795_000_000, text="hello ✓")),
        ("set", ConversationSettings(receipts=0, typing=1, media=0)),
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
        }
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
