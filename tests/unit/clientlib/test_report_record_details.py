"""A report record keeps the reason filed and the moderator's action (issue 22, snag 8);
records of older clients (4 or 5 items) still decode and keep their bytes."""

from __future__ import annotations

import os

import msgpack
import pytest

from clientlib.client._reports import ReportRecord
from clientlib.keystore.errors import CorruptKeystore

NOW = 1_800_000_000


def test_reason_and_action_round_trip() -> None:
    cid = os.urandom(16)
    rec = ReportRecord(cid, "ab" * 16, "open", NOW, reason="threats")
    raw = rec.encode()
    assert msgpack.unpackb(raw) == [cid, "ab" * 16, "open", NOW, "msg", "threats", ""]
    assert ReportRecord.decode(raw) == rec
    done = ReportRecord.decode(raw).resolved("revoke")
    assert (done.status, done.reason, done.action) == ("resolved", "threats", "revoke")
    assert ReportRecord.decode(done.encode()) == done
    req = ReportRecord(cid, "cd" * 8, "open", NOW, request=True, reason="spam")
    assert ReportRecord.decode(req.encode()) == req


def test_older_records_decode_and_bad_ones_are_refused() -> None:
    cid = os.urandom(16)
    legacy_addr = msgpack.packb([cid, "x", "resolved", NOW, "addr"], use_bin_type=True)
    rec = ReportRecord.decode(legacy_addr)
    assert rec.request and (rec.reason, rec.action) == ("", "") and rec.encode() == legacy_addr
    for bad in (
        [cid, "x", "open", NOW, "other", "spam", ""],
        [cid, "x", "open", NOW, "msg", 1, ""],
        [cid, "x", "open", NOW, "msg", "spam"],
    ):
        with pytest.raises(CorruptKeystore):
            ReportRecord.decode(msgpack.packb(bad, use_bin_type=True))
