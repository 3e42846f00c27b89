"""Owner commands decode into one frozen type per operation, whose fields are the operation's
field rules (issue 10 item 5): the rules below are protocol.md §4.3-§4.11 written out once
more by hand, and the types must say exactly the same."""

from __future__ import annotations

import dataclasses

import pytest

from clientlib.errors import WireError
from clientlib.wire.frames import DEFAULT_BOUNDARIES, OWNER_OPS
from clientlib.wire.owner import (
    CreateMailbox,
    FetchEnvelopes,
    FileReport,
    GetReportStatus,
    MailboxOp,
    OwnerCommand,
    PutPreKeys,
    RegisterPush,
    SetBoundaries,
    SetCapabilities,
    Subscribe,
    UnregisterPush,
    decode_owner_command,
    decode_owner_op,
    owner_op,
)

NONCE = b"n" * 32
RID = b"r" * 16

#: op -> (required fields, allowed fields), as protocol.md §4 lists them.
SPEC = {
    "create": ({"key"}, {"kind", "bnd"}),
    "sub": ({"rid"}, set()),
    "delete": ({"rid"}, set()),
    "fetch": ({"rid"}, {"ack", "max"}),
    "keys": ({"rid"}, {"static", "otk", "replace"}),
    "caps": ({"rid"}, {"add", "remove"}),
    "bnd": ({"rid", "bnd"}, set()),
    "ban": ({"rid"}, {"hdl", "unban"}),
    "info": ({"rid"}, set()),
    "report": (
        {"rid", "msg", "fk", "fc", "ft", "fx", "snd", "rcp", "why"},
        {"atts", "ath", "note", "amf", "akid"},  # ath: revision 8, protocol.md §5.9
    ),
    "rstat": ({"rid", "report"}, set()),
    "dcaps": ({"sid", "key"}, {"add", "remove"}),  # revision 9, protocol.md §26.2
    "push": ({"rid", "url", "tok"}, set()),  # revision 12, protocol.md §28
    "unpush": ({"rid"}, set()),
}


def test_the_types_declare_the_spec_rules() -> None:
    from clientlib.wire.owner import _RULES

    assert set(SPEC) == set(OWNER_OPS) == set(_RULES)
    for op, (required, allowed) in SPEC.items():
        assert _RULES[op] == (frozenset(required), frozenset(allowed)), op


def test_every_command_field_belongs_to_some_operation() -> None:
    used = {"op", "nonce"}.union(*(r | a for r, a in SPEC.values()))
    assert {f.attr for f in OwnerCommand.SCHEMA} == used


@pytest.mark.parametrize(
    ("cmd", "kind"),
    [
        (OwnerCommand(op="create", nonce=NONCE, key=b"k" * 32), CreateMailbox),
        (OwnerCommand(op="sub", nonce=NONCE, rid=RID), Subscribe),
        (OwnerCommand(op="fetch", nonce=NONCE, rid=RID, ack=(1, 2), max=3), FetchEnvelopes),
        (OwnerCommand(op="keys", nonce=NONCE, rid=RID), PutPreKeys),
        (OwnerCommand(op="caps", nonce=NONCE, rid=RID, remove=(b"c" * 32,)), SetCapabilities),
        (OwnerCommand(op="bnd", nonce=NONCE, rid=RID, bnd=DEFAULT_BOUNDARIES), SetBoundaries),
        (OwnerCommand(op="rstat", nonce=NONCE, rid=RID, report=b"p" * 16), GetReportStatus),
        (
            OwnerCommand(op="push", nonce=NONCE, rid=RID, url="https://a.example/", tok=b"t" * 32),
            RegisterPush,
        ),
        (OwnerCommand(op="unpush", nonce=NONCE, rid=RID), UnregisterPush),
    ],
)
def test_decode_gives_the_operation_type_with_every_field(
    cmd: OwnerCommand, kind: type[object]
) -> None:
    op = decode_owner_op(cmd.encode())
    assert type(op) is kind and cmd.op == op.OP and op.nonce == NONCE
    for f in dataclasses.fields(op):  # type: ignore[arg-type]
        assert getattr(op, f.name) == getattr(cmd, f.name), f.name
    assert op.target == (None if kind is CreateMailbox else RID)
    assert isinstance(op, MailboxOp) == (kind is not CreateMailbox)
    assert decode_owner_command(cmd.encode()) == cmd  # the generic form still round-trips


def test_prekey_query_is_the_same_on_both_forms() -> None:
    for fields in ({}, {"replace": 0, "otk": ()}, {"replace": 1}, {"static": b"s"}):
        cmd = OwnerCommand(op="keys", nonce=NONCE, rid=RID, **fields)  # type: ignore[arg-type]
        op = owner_op(cmd)
        assert isinstance(op, PutPreKeys)
        assert op.is_query == cmd.is_prekey_query


def test_report_needs_its_evidence_and_is_frozen() -> None:
    with pytest.raises(WireError):
        decode_owner_op(OwnerCommand(op="report", nonce=NONCE, rid=RID).encode())
    full = OwnerCommand(
        op="report",
        nonce=NONCE,
        rid=RID,
        msg=b"m",
        fk=b"k" * 32,
        fc=b"c" * 32,
        ft=b"t" * 32,
        fx=b"x" * 41,
        snd=b"s" * 32,
        rcp=b"r" * 32,
        why="spam",
    )
    op = decode_owner_op(full.encode())
    assert isinstance(op, FileReport) and op.amf is None and op.atts is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.why = "other"  # type: ignore[misc]
