"""Reports on the wire (protocol.md §4.11, revision 4): owner commands ``report`` and
``rstat``, relay frames ``reported`` and ``rstat``, the franking fields of stored envelopes,
the new error codes, the shared ``Text`` check and the transport's local checks."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.errors import LocalProtocolError, WireError
from clientlib.transport.base import check_report_id, report_fields
from clientlib.wire import (
    MAX_FRAME_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    MAX_REPORT_ATTACHMENTS,
    MAX_REPORT_NOTE_BYTES,
    OWNER_OPS,
    REPORT_REASONS,
    EnvelopeDelivered,
    ErrorCode,
    ErrorReply,
    MailboxInfo,
    OwnerCommand,
    ReportAccepted,
    ReportStatus,
    RequestChallenge,
    SignedOwnerCommand,
    StoredEnvelope,
    Text,
    decode_client_frame,
    decode_owner_command,
    decode_relay_frame,
)

NONCE = b"n" * 32
RID = b"r" * 16
FIELDS: dict[str, object] = {
    "msg": b"\x01message",
    "fk": b"k" * 32,
    "fc": b"c" * 32,
    "ft": b"t" * 32,
    "fx": b"x" * 25,
    "snd": b"s" * 32,
    "rcp": b"p" * 32,
    "why": "harassment",
}


def raw(fields: dict[str, object]) -> bytes:
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


def report_cmd(**changes: object) -> dict[str, object]:
    out: dict[str, object] = {"op": "report", "nonce": NONCE, "rid": RID, **FIELDS}
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def bad(fields: dict[str, object]) -> None:
    with pytest.raises(WireError) as info:
        decode_owner_command(raw(fields))
    assert info.value.code == "MALFORMED"


def test_ops_and_codes() -> None:
    assert {"report", "rstat"} <= set(OWNER_OPS)
    assert {"FRANKING", "EXPIRED", "DUPLICATE"} <= {c.value for c in ErrorCode}
    for op in ("report", "rstat"):
        assert decode_client_frame(RequestChallenge(id=1, op=op, rid=RID).encode())[1].op == op
    for code in ("FRANKING", "EXPIRED", "DUPLICATE"):
        _, frame = decode_relay_frame(ErrorReply(code=code, id=3).encode())
        assert frame == ErrorReply(code=code, id=3)
    assert REPORT_REASONS == (
        "harassment",
        "threats",
        "non_consensual_content",
        "minor_safety",
        "spam",
        "impersonation",
        "other",
    )


def test_report_command_round_trip() -> None:
    full = OwnerCommand(
        op="report",
        nonce=NONCE,
        rid=RID,
        msg=b"",
        fk=b"k" * 32,
        fc=b"c" * 32,
        ft=b"t" * 32,
        fx=b"x" * 64,
        snd=b"s" * 32,
        rcp=b"p" * 32,
        atts=(b"", b"a" * 100),
        why="other",
        note="ünïcode note",
    )
    assert decode_owner_command(full.encode()) == full
    minimal = decode_owner_command(raw(report_cmd()))
    assert (minimal.atts, minimal.note, minimal.msg) == (None, None, FIELDS["msg"])
    status = OwnerCommand(op="rstat", nonce=NONCE, rid=RID, report=b"i" * 16)
    assert decode_owner_command(status.encode()) == status


@pytest.mark.parametrize("key", ["rid", "msg", "fk", "fc", "ft", "fx", "snd", "rcp", "why"])
def test_report_requires_every_field(key: str) -> None:
    fields = report_cmd()
    del fields[key]
    bad(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"fk": b"k" * 31},
        {"fc": b"c" * 33},
        {"ft": b"t" * 16},
        {"fx": b""},
        {"fx": b"x" * 65},
        {"snd": b"s" * 31},
        {"rcp": b"p" * 33},
        {"msg": b"m" * 65537},
        {"msg": "text is not bin"},
        {"why": "rude"},
        {"why": b"spam"},
        {"note": "x" * (MAX_REPORT_NOTE_BYTES + 1)},
        {"note": "é" * (MAX_REPORT_NOTE_BYTES // 2 + 1)},  # counted in UTF-8 bytes
        {"note": "nul\x00"},
        {"note": b"bytes"},
        {"atts": [b""] * (MAX_REPORT_ATTACHMENTS + 1)},
        {"atts": ["not bin"]},
        {"atts": b"not a list"},
        {"report": b"i" * 16},  # rstat's field on report
        {"key": b"k" * 32},  # create's field on report
        {"add": []},
    ],
)
def test_report_field_rules(change: dict[str, object]) -> None:
    bad(report_cmd(**change))


def test_rstat_rules() -> None:
    bad({"op": "rstat", "nonce": NONCE, "rid": RID})
    bad({"op": "rstat", "nonce": NONCE, "report": b"i" * 16})
    bad({"op": "rstat", "nonce": NONCE, "rid": RID, "report": b"i" * 15})
    bad({"op": "rstat", "nonce": NONCE, "rid": RID, "report": b"i" * 16, "msg": b""})
    # No earlier operation accepts the new fields.
    for op in ("sub", "delete", "fetch", "keys", "caps", "bnd", "ban", "info"):
        bad({"op": op, "nonce": NONCE, "rid": RID, "why": "spam"})


def test_the_largest_report_fits_a_frame() -> None:
    atts = tuple(b"a" * 1000 for _ in range(10))
    fields = report_fields(
        msg=b"m" * 65536,
        fk=b"k" * 32,
        fc=b"c" * 32,
        ft=b"t" * 32,
        fx=b"x" * 64,
        sender=b"s" * 32,
        recipient=b"p" * 32,
        attachments=atts,
        reason="spam",
        note="n" * MAX_REPORT_NOTE_BYTES,
    )
    cmd = OwnerCommand(op="report", nonce=NONCE, rid=RID, **fields).encode()
    assert len(cmd) <= MAX_OWNER_COMMAND_SIZE
    frame = SignedOwnerCommand(id=2**32 - 1, cmd=cmd, sig=b"g" * 64).encode()
    assert len(frame) <= MAX_FRAME_SIZE
    assert decode_owner_command(cmd).atts == atts


def test_relay_frames_round_trip() -> None:
    for frame in (
        ReportAccepted(id=1, report=b"i" * 16),
        ReportStatus(id=2, report=b"i" * 16, status="open", action=None, ts=5),
        ReportStatus(id=3, report=b"i" * 16, status="resolved", action="revoke", ts=9),
    ):
        assert decode_relay_frame(frame.encode())[1] == frame
    for fields in (
        {"t": "reported", "id": 1, "report": b"i" * 15},
        {"t": "rstat", "id": 1, "report": b"i" * 16, "status": "closed", "ts": 1},
        {"t": "rstat", "id": 1, "report": b"i" * 16, "status": "open", "action": "ban", "ts": 1},
        {"t": "rstat", "id": 1, "report": b"i" * 16, "status": "open"},
    ):
        with pytest.raises(WireError):
            decode_relay_frame(raw(fields))


def test_stored_envelope_franking_fields() -> None:
    env = StoredEnvelope(
        seq=1, eid=b"e" * 16, ts=1, flags=0, ct=b"c" * 256, fc=b"f" * 32, ft=b"t" * 32, fx=b"x" * 57
    )
    pushed = EnvelopeDelivered(rid=RID, env=env)
    assert decode_relay_frame(pushed.encode())[1] == pushed
    plain = StoredEnvelope(seq=1, eid=b"e" * 16, ts=1, flags=0, ct=b"c" * 256)
    assert "ft" not in plain.to_map() and "fx" not in plain.to_map()  # revision-3 peers
    for change in ({"ft": b"t" * 31}, {"fx": b""}, {"fx": b"x" * 65}):
        with pytest.raises(WireError):
            StoredEnvelope.from_map({**env.to_map(), **change})


def test_info_suspended_flag() -> None:
    fields = {
        "t": "info",
        "id": 1,
        "kind": "addr",
        "sid": b"s" * 16,
        "owner_key": b"o" * 32,
        "created_day": 1,
        "active_day": 1,
        "last_seq": 0,
        "envelopes": 0,
        "bytes": 0,
        "dedupe_records": 0,
        "prekeys_left": 0,
        "prekey_static": 0,
        "prekeys_handed": 0,
        "caps": 0,
        "bans": 0,
        "requests": 0,
        "requests_today": 0,
    }
    assert MailboxInfo.from_map(fields).suspended is None
    assert MailboxInfo.from_map({**fields, "suspended": 1}).suspended == 1
    with pytest.raises(WireError):
        MailboxInfo.from_map({**fields, "suspended": 0})  # absent unless suspended


@given(st.text(max_size=300))
def test_text_check(value: str) -> None:
    check = Text(100)
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(WireError):
            check.check(value)
        return
    if len(encoded) <= 100 and "\x00" not in value:
        assert check.check(value) == value
    else:
        with pytest.raises(WireError):
            check.check(value)


def test_text_check_types() -> None:
    with pytest.raises(WireError):
        Text(10).check(b"bytes")
    with pytest.raises(WireError):
        Text(10).check("\ud800")


def test_transport_report_fields() -> None:
    good = {
        "msg": b"m",
        "fk": b"k" * 32,
        "fc": b"c" * 32,
        "ft": b"t" * 32,
        "fx": b"x" * 25,
        "sender": b"s" * 32,
        "recipient": b"p" * 32,
        "attachments": (),
        "reason": "spam",
        "note": None,
    }
    fields = report_fields(**good)  # type: ignore[arg-type]
    assert (fields["snd"], fields["rcp"], fields["why"], fields["atts"]) == (
        b"s" * 32,
        b"p" * 32,
        "spam",
        None,
    )
    for change in (
        {"fk": b"k"},
        {"fc": b"c" * 31},
        {"ft": b""},
        {"fx": b""},
        {"fx": b"x" * 65},
        {"sender": b"s"},
        {"recipient": b"p" * 64},
        {"msg": b"m" * 65537},
        {"attachments": (b"",) * 17},
        {"attachments": (b"a" * 40_000, b"a" * 42_000)},
        {"reason": "rude"},
        {"note": "x" * 1001},
        {"note": "\x00"},
        {"note": "\udcff"},
    ):
        with pytest.raises(LocalProtocolError):
            report_fields(**{**good, **change})  # type: ignore[arg-type]
    # Just below and just above the owner command limit.
    fits = report_fields(**{**good, "attachments": (b"a" * 40_000, b"a" * 40_500)})  # type: ignore[arg-type]
    assert len(fits["atts"]) == 2
    check_report_id(b"i" * 16)
    with pytest.raises(LocalProtocolError):
        check_report_id(b"i" * 15)


def test_attachments_by_hash() -> None:
    """Revision 8 (protocol.md §5.9 "Reports"): ``ath`` carries the attachments' SHA-256
    instead of their plaintexts; never both, 32 bytes each, at most 16."""
    h = b"h" * 32
    cmd = decode_owner_command(raw(report_cmd(ath=[h, h])))
    assert cmd.ath == (h, h) and cmd.atts is None
    for bad in (
        report_cmd(ath=[h], atts=[b"x"]),  # both
        report_cmd(ath=[b"h" * 31]),
        report_cmd(ath=[h] * (MAX_REPORT_ATTACHMENTS + 1)),
    ):
        with pytest.raises(WireError):
            decode_owner_command(raw(bad))
    fields = report_fields(
        msg=b"m",
        fk=b"k" * 32,
        fc=b"c" * 32,
        ft=b"t" * 32,
        fx=b"x" * 25,
        sender=b"s" * 32,
        recipient=b"p" * 32,
        attachments=(),
        attachment_hashes=[h],
        reason="harassment",
        note=None,
    )
    assert fields["ath"] == (h,) and fields["atts"] is None
    for kw in ({"attachments": [b"x"], "attachment_hashes": [h]}, {"attachment_hashes": [b"x"]}):
        with pytest.raises(LocalProtocolError):
            report_fields(
                msg=b"m",
                fk=b"k" * 32,
                fc=b"c" * 32,
                ft=b"t" * 32,
                fx=b"x" * 25,
                sender=b"s" * 32,
                recipient=b"p" * 32,
                reason="harassment",
                note=None,
                **{"attachments": (), **kw},  # type: ignore[arg-type]
            )
