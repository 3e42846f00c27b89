"""Generate ``group-v1.json``: vectors for groups (protocol.md §26.3-§26.5): per-group keys,
the membership log (entries, hashes, signatures), epoch derivations (capability, control
key), the sender-key chain, the three envelope types and, since revision 16 (§26.9), the
franking of a group text (group point, committed content, ``fc``, AMF signature). Deterministic: every random byte
comes from the DRBG of ``generate_vectors.py`` seeded with ``"group-v1"``.
``tests/conformance/test_group_vectors.py`` checks every value through the client and
re-derives it from protocol.md alone.

Run: ``python tests/vectors/generate_group_vectors.py`` (rewrites the file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

import msgpack  # noqa: E402
from generate_vectors import DRBG  # noqa: E402

from clientlib.crypto.group import (  # noqa: E402
    GroupKeys,
    GroupSettings,
    GroupState,
    Member,
    SenderChain,
    control_key,
    epoch_capability,
    seal_control,
    seal_direct,
    seal_message,
)
from clientlib.crypto.group_frank import (  # noqa: E402
    frank_group_text,
    group_content,
    group_recipient,
)
from relay.amf import judge_key  # noqa: E402

OUT = HERE / "group-v1.json"


def h(b: bytes) -> str:
    return b.hex()


def build() -> dict[str, Any]:
    rng = DRBG(b"group-v1")
    gid = rng(16)
    owner, admin, member = (GroupKeys.generate(rng) for _ in range(3))
    iks = [rng(32) for _ in range(3)]  # identity keys: any valid Ed25519 public key
    from clientlib.crypto.primitives import ed25519_public_from_seed

    iks = [ed25519_public_from_seed(s) for s in iks]
    sids = [rng(16) for _ in range(3)]
    people = [
        Member(iks[0], owner.gpk, owner.xpk, sids[0], "owner", "olga"),
        Member(iks[1], admin.gpk, admin.xpk, sids[1], "member", "adam"),
        Member(iks[2], member.gpk, member.xpk, sids[2], "member", "mia"),
    ]
    state = GroupState(gid=gid)
    log = []
    steps: list[tuple[str, list[Any], GroupKeys]] = [
        ("create", ["friends", GroupSettings().encode(), people[0].encode()], owner),
        ("add", [people[1].encode()], owner),
        ("add", [people[2].encode()], owner),
        ("role", [admin.gpk, "admin"], owner),
        ("set", [["admins", 0, 3600]], admin),
        ("remove", [member.gpk], admin),
    ]
    for kind, body, signer in steps:
        entry = state.next_entry(kind, body, signer)
        state.apply(entry)
        log.append(
            {
                "kind": kind,
                "signed": h(entry.signed_bytes()),
                "sig": h(entry.sig),
                "encoded": h(entry.encode()),
                "hash": h(entry.hash),
                "epoch": entry.epoch,
            }
        )
    keys = [
        {
            "sign_seed": h(k.sign_seed),
            "dh_private": h(k.dh_private),
            "gpk": h(k.gpk),
            "xpk": h(k.xpk),
        }
        for k in (owner, admin, member)
    ]
    es = rng(32)
    epoch = {
        "es": h(es),
        "caps": [{"sid": h(s), "cap": h(epoch_capability(es, s))} for s in sids],
        "control_key": h(control_key(es, gid)),
    }
    chain = SenderChain.new(1, 2, rng)
    start = chain.ck
    steps_out = []
    messages = []
    for i in range(3):
        pt = rng(100 + i)
        before = chain.ck
        ct = seal_message(owner, gid, chain, pt)
        steps_out.append({"index": i, "ck": h(before)})
        messages.append({"plaintext": h(pt), "envelope": h(ct)})
    control_pt = rng(77)
    control = seal_control(admin, gid, 1, es, control_pt, rng)
    direct_pt = rng(60)
    direct = seal_direct(owner, gid, admin.xpk, direct_pt, rng)
    # Reports of group messages (§26.9, revision 16): drawn last, so nothing above changes.
    franking_key, kid = rng(32), 3
    judge = judge_key(franking_key)
    mid, ts, text = rng(16), 1_765_000_000, "a reportable group text"
    content = group_content(mid, ts, text)
    franked = frank_group_text(owner.sign_seed, owner.gpk, gid, content, kid, judge.public, rng)
    _, _, fk, _, sigma = msgpack.unpackb(franked.plain)
    report = {
        "franking_key": h(franking_key),
        "kid": kid,
        "judge_secret": h(judge.secret),
        "moderator": h(judge.public),
        "sender": h(owner.gpk),
        "recipient": h(group_recipient(gid)),
        "mid": h(mid),
        "ts": ts,
        "text": text,
        "content": h(content),
        "fk": h(fk),
        "fc": h(franked.fc),
        "sigma": h(sigma),
        "plaintext": h(franked.plain),
    }
    return {
        "group-v1": {
            "gid": h(gid),
            "keys": keys,
            "members": [[h(x) if isinstance(x, bytes) else x for x in m.encode()] for m in people],
            "log": log,
            "final": {
                "epoch": state.epoch,
                "head": h(state.head),
                "members": [h(g) for g in state.members],
            },
            "epoch": epoch,
            "chain": {
                "epoch": 1,
                "gen": 2,
                "ck0": h(start),
                "steps": steps_out,
                "messages": messages,
            },
            "control": {"epoch": 1, "plaintext": h(control_pt), "envelope": h(control)},
            "direct": {"plaintext": h(direct_pt), "envelope": h(direct), "to": h(admin.xpk)},
            "report": report,
        }
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")


if __name__ == "__main__":
    main()
