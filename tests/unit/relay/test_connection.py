"""The sans-IO connection state: challenges are single-use, bound and expiring."""

from __future__ import annotations

import pytest

from clientlib.wire import ChallengeIssued, ErrorReply, RequestChallenge, decode_relay_frame
from relay.auth import challenge_binding
from relay.errors import RelayError
from relay.protocol import ConnectionLimits, RelayConnection

LIMITS = ConnectionLimits(
    max_frame=70_000, max_pending_challenges=2, max_subscriptions=1, challenge_ttl_s=60
)


async def test_challenge_lifecycle() -> None:
    conn = RelayConnection(LIMITS)
    rid = b"r" * 16
    reply = conn.issue_challenge(RequestChallenge(id=1, op="sub", rid=rid), b"n" * 32, now=1000)
    _, frame = decode_relay_frame(reply)
    assert frame == ChallengeIssued(id=1, nonce=b"n" * 32)
    assert await conn.take_challenge(b"n" * 32, 1060) == challenge_binding("sub", rid)
    assert await conn.take_challenge(b"n" * 32, 1060) is None  # single use


async def test_challenge_expiry_and_limit() -> None:
    conn = RelayConnection(LIMITS)
    conn.issue_challenge(RequestChallenge(id=1, op="create"), b"a" * 32, now=0)
    conn.issue_challenge(RequestChallenge(id=2, op="create"), b"b" * 32, now=0)
    with pytest.raises(RelayError) as err:
        conn.issue_challenge(RequestChallenge(id=3, op="create"), b"c" * 32, now=10)
    assert err.value.code == "LIMIT"
    assert await conn.take_challenge(b"a" * 32, 61) is None  # expired
    # Expired challenges free their slots.
    conn.issue_challenge(RequestChallenge(id=4, op="create"), b"d" * 32, now=200)
    assert await conn.take_challenge(b"d" * 32, 200) == challenge_binding("create", None)


def test_bad_frames_raise_documented_codes() -> None:
    conn = RelayConnection(LIMITS)
    for data, code in (
        (b"", "MALFORMED"),
        (b"\x00\x80", "VERSION"),
        (b"\x01" + b"\x00" * 80_000, "TOO_LARGE"),
    ):
        with pytest.raises(RelayError) as err:
            conn.receive_frame(data)
        assert err.value.code == code
    _, frame = decode_relay_frame(conn.error(err.value.code, 7))
    assert frame == ErrorReply(code="TOO_LARGE", id=7)


def test_subscription_rules() -> None:
    conn = RelayConnection(LIMITS)
    assert conn.can_subscribe(b"x" * 16)
    conn.subscriptions.add(b"x" * 16)
    assert conn.can_subscribe(b"x" * 16) and not conn.can_subscribe(b"y" * 16)
    with pytest.raises(RelayError):
        conn.require_subscribed(b"y" * 16)
