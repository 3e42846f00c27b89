"""Generate ``devices-v1.json``: vectors for the backup file (protocol.md §24.3), the
session offer (§24.4), the signed device list (§24.5) and the linking transcript (§24.6). Deterministic: every random byte comes from the DRBG of
``generate_vectors.py`` seeded with ``"devices-v1"``. ``tests/conformance/test_devices_vectors.py``
checks every value through the client and re-derives the backup from protocol.md alone
(``cryptography`` HKDF, libsodium's XChaCha20-Poly1305 through PyNaCl, ``msgpack``).

Run: ``python tests/vectors/generate_devices_vectors.py`` (rewrites the file).
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

from clientlib.client.backup import (  # noqa: E402
    BackupContact,
    BackupContents,
    BackupGroup,
    encode_body,
    recovery_words,
    seal_backup,
)
from clientlib.client.content import (  # noqa: E402
    EditMessage,
    OwnAction,
    Reaction,
    Receipt,
    Unsend,
)
from clientlib.client.devicelist import (  # noqa: E402
    DeviceList,
    LinkCode,
    encode_transfer,
    link_keys,
    msg1,
    seal_msg2,
)
from clientlib.crypto.keys import IdentityKeyPair, X25519KeyPair  # noqa: E402
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair  # noqa: E402
from clientlib.session.handshake import PreKeyBundle  # noqa: E402
from clientlib.session.offer import seal_offer  # noqa: E402

OUT = HERE / "devices-v1.json"


def h(b: bytes) -> str:
    return b.hex()


def backup(rng: DRBG) -> dict[str, Any]:
    key = rng(32)
    contact = BackupContact(
        cid=rng(16),
        name="bob",
        identity=bytes(IdentityKeyPair(rng(32)).public),
        rid=rng(16),
        sid=rng(16),
        owner=rng(32),
        mycap=rng(32),
        send=rng(16),
        sendcap=rng(32),
        verified=True,
        blocked=False,
        created=1764720000,
        settings=[1, 0, 1, 1],
        peer=[1, 1, 1],
        dis=3600,
        disv=2,
    )
    contents = BackupContents(
        seed=rng(32),
        relay="https://relay.example",
        name="alice",
        created=1764806400,
        boundaries=[16384, 0, 50, 0],
        contacts=[contact],
    )
    mark = len(rng.log)
    # Body version 1 (revision 10, no groups): what every earlier backup holds.
    data = seal_backup(contents, key, rng, body_version=1)
    salt, nonce = rng.log[mark], rng.log[mark + 1]
    return {
        "recovery_key": h(key),
        "words": recovery_words(key),
        "salt": h(salt),
        "nonce": h(nonce),
        "body": h(encode_body(contents, version=1)),
        "file": h(data),
        "contact": {
            k: (h(v) if isinstance(v, bytes) else v)
            for k, v in (
                ("cid", contact.cid),
                ("identity", contact.identity),
                ("owner", contact.owner),
            )
        },
        "seed": h(contents.seed),
    }


def backup_v2(rng: DRBG) -> dict[str, Any]:
    """Body version 2: the same layout with one active group (§24.3)."""
    key = rng(32)
    group = BackupGroup(
        gid=rng(16),
        name="alice",
        seed=rng(32),
        dh=rng(32),
        rid=rng(16),
        sid=rng(16),
        owner=rng(32),
        log=[rng(40), rng(40)],
        es=rng(32),
        ese=0,
        ngen=1,
        peers={rng(32): [0, 0, 3, rng(32), [[1, rng(32)]]]},
        typ=True,
    )
    contents = BackupContents(
        seed=rng(32),
        relay="https://relay.example",
        name="alice",
        created=1764806400,
        boundaries=None,
        contacts=[],
        groups=[group],
    )
    mark = len(rng.log)
    data = seal_backup(contents, key, rng)
    return {
        "recovery_key": h(key),
        "salt": h(rng.log[mark]),
        "nonce": h(rng.log[mark + 1]),
        "body": h(encode_body(contents)),
        "file": h(data),
        "gid": h(group.gid),
    }


def offer(rng: DRBG) -> dict[str, Any]:
    a = IdentityKeyPair(rng(32))
    b = IdentityKeyPair(rng(32))
    spk = PreKeyPair.generate(a, PreKeyKind.X25519_SIGNED, 7, rng)
    lr = PreKeyPair.generate(a, PreKeyKind.MLKEM_LAST_RESORT, 8, rng)
    bundle = PreKeyBundle.build(a.public, spk.public_record, lr.public_record)
    ts = 1764806400
    mark = len(rng.log)
    ct = seal_offer(a, b.public, bundle, ts=ts, rng=rng)
    return {
        "sender_seed": h(a.private_bytes()),
        "recipient_seed": h(b.private_bytes()),
        "ts": ts,
        "bundle": h(bundle.to_bytes()),
        "seal_rng": [h(x) for x in rng.log[mark:]],
        "ct": h(ct),
    }


def device_list(rng: DRBG) -> dict[str, Any]:
    ik = IdentityKeyPair(rng(32))
    devs = [(rng(16), "phone"), (rng(16), "laptop")]
    dl = DeviceList.sign(ik, 2, devs)
    return {
        "identity_seed": h(ik.private_bytes()),
        "version": 2,
        "devices": [[h(d), n] for d, n in devs],
        "raw": h(dl.raw),
    }


def linking(rng: DRBG) -> dict[str, Any]:
    x_n = X25519KeyPair(rng(32))
    x_e = X25519KeyPair(rng(32))
    code = LinkCode(1764806400, rng(16), rng(32), bytes(x_n.public), "https://relay.example")
    keys = link_keys(code, x_e.dh(bytes(x_n.public)), bytes(x_e.public))
    transfer = encode_transfer(
        backup=b"\x01backup body",
        device_list=b"\x01device list",
        did=rng(16),
        approver=rng(16),
        self_sid=rng(16),
        self_cap=rng(32),
    )
    nonce = rng(24)
    return {
        "new_device_x25519": h(x_n.private_bytes()),
        "approver_x25519": h(x_e.private_bytes()),
        "code": code.text,
        "code_payload": h(code.payload()),
        "th": h(keys.th),
        "key": h(keys.key),
        "sas": keys.sas,
        "msg1": h(msg1(x_e)),
        "transfer": h(transfer),
        "nonce": h(nonce),
        "msg2": h(seal_msg2(keys, transfer, nonce)),
    }


def own_actions(rng: DRBG) -> dict[str, Any]:
    """The ``own`` content (§24.7): one of each inner content, for a fixed contact id."""
    to = rng(16)
    inner = {
        "del": Unsend(ref=rng(16)),
        "edit": EditMessage(ref=rng(16), ts=1764806400, text="fixed"),
        "rx": Reaction(ref=rng(16), mine=1, emoji="👍"),
        "rcp": Receipt(rd=(rng(16), rng(16))),
    }
    return {
        "to": h(to),
        "cases": [
            {"inner": h(c.encode()), "own": h(OwnAction(to=to, c=c.encode()).encode())}
            for c in inner.values()
        ],
    }


def build() -> dict[str, Any]:
    rng = DRBG(b"devices-v1")
    return {
        "devices-v1": {
            "backup": backup(rng),
            "offer": offer(rng),
            "device_list": device_list(rng),
            "linking": linking(rng),
            "own": own_actions(rng),
            "backup_v2": backup_v2(rng),
        }
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
