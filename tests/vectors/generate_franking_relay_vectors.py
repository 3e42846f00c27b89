"""Generate ``franking-relay-v1.json``: vectors for relay franking tags and report
verification (protocol.md §4.11, Part II §15.4). Deterministic: every random byte comes from
the DRBG of ``generate_vectors.py`` seeded with ``"franking-relay-v1"``.

The commitments are computed by the client (``clientlib.crypto.franking``), the tags and
contexts by the relay (``relay.franking``); the generator checks that the relay's commitment
agrees with the client's. ``tests/conformance/test_franking_relay_vectors.py`` re-derives
every value through a third path (stdlib ``hmac``/``struct`` written from protocol.md) and
replays the report cases against the relay's verification.

Run: ``python tests/vectors/generate_franking_relay_vectors.py`` (rewrites the file).
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

from clientlib.crypto.amf import forge_as_recipient, frank  # noqa: E402
from clientlib.crypto.franking import franking_commit  # noqa: E402
from clientlib.crypto.keys import IdentityKeyPair  # noqa: E402
from clientlib.wire import capability_hash, encode_map  # noqa: E402
from relay.amf import judge_key  # noqa: E402
from relay.franking import (  # noqa: E402
    RELAY_FRANK_CONTEXT,
    build_context,
    commitment,
    relay_tag,
    report_id,
)

OUT = HERE / "franking-relay-v1.json"
DAY = 86_400
T0 = 1_795_000_000  # the first key's creation
WINDOW = 30 * DAY
ROTATION = 7 * DAY


def h(b: bytes) -> str:
    return b.hex()


def build() -> dict[str, Any]:
    rng = DRBG(b"franking-relay-v1")
    keys = [
        {"kid": 1, "secret": rng(32), "created": T0},
        {"kid": 2, "secret": rng(32), "created": T0 + ROTATION},
    ]
    sid, other_sid = rng(16), rng(16)
    cap = rng(32)
    cap_hash = capability_hash(sid, cap)
    handle = rng(16)

    # --- tags over fixed keys and contexts, one per source kind ------------------------
    tags = []
    for name, kind, src, key in (
        ("capability (pair mailbox)", 1, cap_hash, keys[1]),
        ("handle (contact address)", 2, handle, keys[1]),
        ("none (open mailbox)", 0, b"", keys[0]),
    ):
        fc = rng(32)
        day = (T0 + ROTATION) // DAY
        ctx = build_context(key["kid"], day, sid, kind, src)
        tag = relay_tag(key["secret"], fc, ctx)
        tags.append(
            {
                "name": name,
                "key": h(key["secret"]),
                "kid": key["kid"],
                "day": day,
                "sid": h(sid),
                "src_kind": kind,
                "src": h(src),
                "fc": h(fc),
                "ctx": h(ctx),
                "tag_input": h(RELAY_FRANK_CONTEXT + fc + ctx),
                "tag": h(tag),
                "report_id": h(report_id(tag)),
            }
        )

    # --- a conversation: Alice sends Bob messages on Bob's pairwise mailbox ------------
    alice, bob = IdentityKeyPair(rng(32)), IdentityKeyPair(rng(32))
    snd, rcp = bytes(alice.public), bytes(bob.public)
    # Revision 5 (protocol.md §15.5.8): each report carries Alice's AMF signature under the
    # moderator key of the franking key it was delivered under. Its hedges come from a DRBG
    # of their own, so every revision-4 byte of this file is unchanged.
    amf_rng = DRBG(b"franking-relay-v1/amf")

    def signed(report: dict[str, Any], kid: int, moderator: bytes) -> dict[str, Any]:
        fc = bytes.fromhex(report["fc"])
        report["amf"] = h(frank(alice, snd, rcp, moderator, kid, fc, rng=amf_rng))
        report["akid"] = kid
        return report

    def message(text: str, atts: list[bytes], key: dict[str, Any], at: int) -> dict[str, Any]:
        msg = encode_map({"t": "msg", "id": rng(16), "ts": at, "text": text}, 1)
        fk = rng(32)
        hashes = [hashlib.sha256(a).digest() for a in atts]
        fc = franking_commit(fk, sender=snd, recipient=rcp, message=msg, attachment_hashes=hashes)
        assert commitment(fk, snd, rcp, msg, atts) == fc
        ctx = build_context(key["kid"], at // DAY, sid, 1, cap_hash)
        return {
            "msg": h(msg),
            "fk": h(fk),
            "fc": h(fc),
            "ft": h(relay_tag(key["secret"], fc, ctx)),
            "fx": h(ctx),
            "snd": h(snd),
            "rcp": h(rcp),
            "atts": [h(a) for a in atts],
            "why": "harassment",
        }

    new_at = T0 + ROTATION + 3600
    abuse = message("you will regret this", [b"\x89PNG picture", b""], keys[1], new_at)
    second = message("second", [], keys[1], new_at + 60)
    old = message("an old message", [], keys[0], T0 + 60)
    old2 = message("another old message", [], keys[0], T0 + 120)
    # An envelope of another mailbox (a tag valid for *its* context).
    elsewhere_ctx = build_context(2, new_at // DAY, other_sid, 0, b"")
    judges = {k["kid"]: judge_key(k["secret"]).public for k in keys}
    for report, key in ((abuse, keys[1]), (second, keys[1]), (old, keys[0]), (old2, keys[0])):
        signed(report, key["kid"], judges[key["kid"]])
    forged = h(
        forge_as_recipient(
            bob, snd, judges[keys[1]["kid"]], keys[1]["kid"], bytes.fromhex(abuse["fc"]),
            rng=amf_rng,
        )
    )  # fmt: skip
    elsewhere = dict(second)
    elsewhere["fx"] = h(elsewhere_ctx)
    elsewhere["ft"] = h(relay_tag(keys[1]["secret"], bytes.fromhex(second["fc"]), elsewhere_ctx))

    def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
        out = dict(base)
        out.update(fields)
        return out

    msg_bytes = bytes.fromhex(abuse["msg"])
    now = new_at + 600
    expired_at = T0 + ROTATION + WINDOW
    cases = [
        {"name": "genuine report", "now": now, "report": abuse, "expect": "accepted"},
        {
            "name": "changed plaintext",
            "now": now,
            "report": changed(abuse, msg=h(msg_bytes[:-1] + b"?")),
            "expect": "FRANKING",
        },
        {
            "name": "changed franking key",
            "now": now,
            "report": changed(abuse, fk=h(rng(32))),
            "expect": "FRANKING",
        },
        {
            "name": "attachment withheld",
            "now": now,
            "report": changed(abuse, atts=abuse["atts"][:1]),
            "expect": "FRANKING",
        },
        {
            "name": "sender and recipient swapped",
            "now": now,
            "report": changed(abuse, snd=abuse["rcp"], rcp=abuse["snd"]),
            "expect": "FRANKING",
        },
        {
            "name": "tag of another envelope",
            "now": now,
            "report": changed(abuse, ft=second["ft"]),
            "expect": "FRANKING",
        },
        {
            "name": "another mailbox's envelope",
            "now": now,
            "report": elsewhere,
            "expect": "FRANKING",
        },
        {
            "name": "context too short",
            "now": now,
            "report": changed(abuse, fx=abuse["fx"][:-2]),
            "expect": "FRANKING",
        },
        {
            "name": "unknown key id",
            "now": now,
            "report": changed(abuse, fx="000000ff" + abuse["fx"][8:]),
            "expect": "EXPIRED",
        },
        {
            "name": "no AMF signature (revision 5)",
            "now": now,
            "report": {k: v for k, v in abuse.items() if k not in ("amf", "akid")},
            "expect": "FRANKING",
        },
        {
            "name": "the recipient's forged AMF signature",
            "now": now,
            "report": changed(abuse, amf=forged),
            "expect": "FRANKING",
        },
        {
            "name": "AMF signature of another message",
            "now": now,
            "report": changed(abuse, amf=second["amf"]),
            "expect": "FRANKING",
        },
        {
            "name": "AMF key id unknown",
            "now": now,
            "report": changed(abuse, akid=0xFF),
            "expect": "EXPIRED",
        },
        {
            "name": "retired key, last second of its window",
            "now": expired_at - 1,
            "report": old,
            "expect": "accepted",
        },
        {
            "name": "retired key, window over",
            "now": expired_at,
            "report": old2,
            "expect": "EXPIRED",
        },
        {"name": "replay", "now": now, "report": abuse, "expect": "DUPLICATE"},
        {
            "name": "replay with another reason",
            "now": now,
            "report": changed(abuse, why="spam"),
            "expect": "DUPLICATE",
        },
    ]
    for case in cases:
        if case["expect"] == "accepted":
            case["report_id"] = h(report_id(bytes.fromhex(case["report"]["ft"])))
    return {
        "franking-relay-v1": {
            "labels": {
                "relay_frank": h(RELAY_FRANK_CONTEXT),
                "franking": h(b"blindrelay/v1/franking\x00"),
            },
            "tags": tags,
            "verification": {
                "mailbox_sid": h(sid),
                "report_window_s": WINDOW,
                "keys": [
                    {"kid": k["kid"], "secret": h(k["secret"]), "created": k["created"]}
                    for k in keys
                ],
                "cases": cases,
            },
        }
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
