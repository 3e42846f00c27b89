"""Invitation link versions (protocol.md §21.2): v2 commits to the identity key, v1 parses."""

from __future__ import annotations

import base64
import os

import pytest

from clientlib.client.invite import (
    IDENTITY_HASH_SIZE,
    IdentityMismatch,
    InvalidInvitation,
    Invitation,
    identity_hash,
)
from clientlib.crypto import IdentityKeyPair
from clientlib.errors import KeyValidationError

BASE = "https://relay.example.org/v1/invite#"


def token(raw: bytes) -> str:
    return BASE + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_v2_round_trip_and_malformed_tokens() -> None:
    ik = IdentityKeyPair.generate(os.urandom).public
    sid, k = os.urandom(16), os.urandom(32)
    inv = Invitation.for_identity("https://relay.example.org", sid, k, ik)
    assert inv.identity_hash == identity_hash(ik) and len(inv.identity_hash) == IDENTITY_HASH_SIZE
    assert Invitation.parse(inv.link) == inv and inv.version == 2
    assert "identity_hash" not in repr(inv) and k.hex() not in repr(inv)
    h = identity_hash(ik)
    for raw in (
        b"\x02" + sid + k,  # v2 without its hash
        b"\x01" + sid + k + h,  # v1 with a hash
        b"\x02" + sid + k + h[:15],
        b"\x02" + sid + k + h + b"\x00",
        b"\x03" + sid + k + h,
        b"\x00" + sid + k,
    ):
        with pytest.raises(InvalidInvitation):
            Invitation.parse(token(raw))
    with pytest.raises(InvalidInvitation):
        Invitation("https://relay.example.org", sid, k, b"short")
    assert issubclass(IdentityMismatch, KeyValidationError)


def test_identity_hash_is_labelled_and_distinct() -> None:
    a = IdentityKeyPair.generate(os.urandom).public
    b = IdentityKeyPair.generate(os.urandom).public
    assert identity_hash(a) != identity_hash(b)
    assert identity_hash(a) == identity_hash(a)
