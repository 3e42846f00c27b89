"""Relay franking vectors (``tests/vectors/franking-relay-v1.json``, protocol.md §4.11 and
Part II §15.4).

Three implementations meet here: the client's commitment (``clientlib.crypto.franking``),
the relay's tag, context and report verification (``relay.franking``, ``relay.moderation``,
written without client crypto), and a third written below from protocol.md with stdlib
``hmac``, ``hashlib`` and ``struct`` only. The report cases run, in order, through the
relay's real verification over a real store, and each must end with its documented outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from clientlib.crypto.franking import franking_commit
from clientlib.wire import OwnerCommand
from clientlib.wire.owner import FileReport, owner_op
from relay.amf import judge_key, verify_as_judge
from relay.config import RelayConfig
from relay.errors import RelayError
from relay.franking import build_context, commitment, parse_context, relay_tag, report_id
from relay.moderation import ModerationService
from relay.storage.base import FrankingKey, MailboxRecord
from relay.storage.sqlite import SQLiteStore

V = json.loads((Path(__file__).parents[1] / "vectors" / "franking-relay-v1.json").read_text())[
    "franking-relay-v1"
]


def x(s: str) -> bytes:
    return bytes.fromhex(s)


# --- the third implementation, from protocol.md ----------------------------------------------


def spec_ctx(kid: int, day: int, sid: bytes, kind: int, src: bytes) -> bytes:
    return struct.pack(">I", kid) + struct.pack(">I", day) + sid + struct.pack(">B", kind) + src


def spec_tag(key: bytes, fc: bytes, ctx: bytes) -> bytes:
    return hmac.new(key, b"blindrelay/v1/relay-frank" + b"\x00" + fc + ctx, "sha256").digest()


def spec_commitment(fk: bytes, snd: bytes, rcp: bytes, msg: bytes, atts: list[bytes]) -> bytes:
    data = b"blindrelay/v1/franking\x00" + snd + rcp + struct.pack(">I", len(msg)) + msg
    data += bytes([len(atts)]) + b"".join(hashlib.sha256(a).digest() for a in atts)
    return hmac.new(fk, data, "sha256").digest()


# --- tags -------------------------------------------------------------------------------------


def test_labels() -> None:
    assert x(V["labels"]["relay_frank"]) == b"blindrelay/v1/relay-frank\x00"
    assert x(V["labels"]["franking"]) == b"blindrelay/v1/franking\x00"


@pytest.mark.parametrize("case", V["tags"], ids=[c["name"] for c in V["tags"]])
def test_tags(case: dict[str, Any]) -> None:
    key, fc, sid, src = x(case["key"]), x(case["fc"]), x(case["sid"]), x(case["src"])
    args = (case["kid"], case["day"], sid, case["src_kind"], src)
    assert build_context(*args) == spec_ctx(*args) == x(case["ctx"])
    parsed = parse_context(x(case["ctx"]))
    assert parsed is not None
    assert (parsed.kid, parsed.day, parsed.sid, parsed.source_kind, parsed.source) == args
    assert x(case["tag_input"]) == x(V["labels"]["relay_frank"]) + fc + x(case["ctx"])
    assert relay_tag(key, fc, x(case["ctx"])) == spec_tag(key, fc, x(case["ctx"])) == x(case["tag"])
    assert report_id(x(case["tag"])) == hashlib.sha256(x(case["tag"])).digest()[:16]
    assert report_id(x(case["tag"])) == x(case["report_id"])


# --- report verification ----------------------------------------------------------------------

CASES = V["verification"]["cases"]


def test_commitments_agree() -> None:
    for case in CASES:
        r = case["report"]
        args = (x(r["fk"]), x(r["snd"]), x(r["rcp"]), x(r["msg"]), [x(a) for a in r["atts"]])
        client = franking_commit(
            args[0],
            sender=args[1],
            recipient=args[2],
            message=args[3],
            attachment_hashes=[hashlib.sha256(a).digest() for a in args[4]],
        )
        assert commitment(*args) == spec_commitment(*args) == client
        if case["expect"] == "accepted":
            assert client == x(r["fc"])


def spec_verdict(case: dict[str, Any], sid: bytes, keys: list[dict[str, Any]], window: int) -> str:
    """protocol.md §4.11 verification order, checks 1-5 and the sender binding of revision 5
    (duplicates and quotas need state)."""
    r = case["report"]
    fx = x(r["fx"])
    kinds = {0: 0, 1: 32, 2: 16}
    if len(fx) < 25 or fx[24] not in kinds or len(fx) != 25 + kinds[fx[24]]:
        return "FRANKING"
    kid = struct.unpack(">I", fx[:4])[0]
    if fx[8:24] != sid:
        return "FRANKING"
    key = next((k for k in keys if k["kid"] == kid), None)
    later = [k["created"] for k in keys if k["kid"] > kid]
    if key is None or (later and case["now"] >= min(later) + window):
        return "EXPIRED"
    if spec_tag(x(key["secret"]), x(r["fc"]), fx) != x(r["ft"]):
        return "FRANKING"
    atts = [x(a) for a in r["atts"]]
    if spec_commitment(x(r["fk"]), x(r["snd"]), x(r["rcp"]), x(r["msg"]), atts) != x(r["fc"]):
        return "FRANKING"
    # Revision 5 (§15.5.8): the sender binding, judged with relay.amf (the spec-only third
    # implementation of the AMF check is in test_amf_vectors.py).
    if "amf" not in r or "akid" not in r:
        return "FRANKING"
    akey = next((k for k in keys if k["kid"] == r["akid"]), None)
    later = [k["created"] for k in keys if k["kid"] > r["akid"]]
    if akey is None or (later and case["now"] >= min(later) + window):
        return "EXPIRED"
    judge = judge_key(x(akey["secret"]))
    if not verify_as_judge(judge, x(r["snd"]), x(r["rcp"]), r["akid"], x(r["fc"]), x(r["amf"])):
        return "FRANKING"
    return "accepted"


def test_spec_verdicts() -> None:
    ver = V["verification"]
    sid = x(ver["mailbox_sid"])
    seen: set[bytes] = set()
    for case in CASES:
        verdict = spec_verdict(case, sid, ver["keys"], ver["report_window_s"])
        if verdict == "accepted":
            rid = report_id(x(case["report"]["ft"]))
            verdict = "DUPLICATE" if rid in seen else verdict
            seen.add(rid)
        assert verdict == case["expect"], case["name"]


async def test_relay_verification(tmp_path: Path) -> None:
    ver = V["verification"]
    config = RelayConfig(report_window_s=ver["report_window_s"], data_dir=str(tmp_path))
    store = SQLiteStore(tmp_path / "relay.db", config.store_limits())
    await store.open()
    try:
        for k in ver["keys"]:
            await store.add_franking_key(FrankingKey(k["kid"], x(k["secret"]), k["created"]))
        clock = {"now": 0.0}
        mod = ModerationService(store, config, clock=lambda: clock["now"])
        mailbox = MailboxRecord(b"r" * 16, x(ver["mailbox_sid"]), b"o" * 32, 0, kind="pair")
        for case in CASES:
            clock["now"] = case["now"]
            r = case["report"]
            cmd = owner_op(
                OwnerCommand(
                    op="report",
                    nonce=b"n" * 32,
                    rid=mailbox.rid,
                    msg=x(r["msg"]),
                    fk=x(r["fk"]),
                    fc=x(r["fc"]),
                    ft=x(r["ft"]),
                    fx=x(r["fx"]),
                    snd=x(r["snd"]),
                    rcp=x(r["rcp"]),
                    atts=tuple(x(a) for a in r["atts"]) or None,
                    why=r["why"],
                    amf=x(r["amf"]) if "amf" in r else None,  # revision 5
                    akid=r.get("akid"),
                )
            )
            assert isinstance(cmd, FileReport)
            if case["expect"] == "accepted":
                assert await mod.file_report(cmd, mailbox) == x(case["report_id"]), case["name"]
            else:
                with pytest.raises(RelayError) as info:
                    await mod.file_report(cmd, mailbox)
                assert info.value.code.value == case["expect"], case["name"]
        accepted = [c for c in CASES if c["expect"] == "accepted"]
        stored = await mod.list_reports(status=None)
        assert sorted(v.id for v in stored) == sorted(c["report_id"] for c in accepted)
        assert len(await mod.audit()) == len(accepted)  # refusals leave no trace
    finally:
        await store.aclose()
