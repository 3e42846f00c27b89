"""The relay's franking constructions (relay/franking.py) against protocol.md and the
client's implementation, the keyring's rotation and report windows, and the moderation
service's local rules."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.crypto.franking import franking_commit
from clientlib.crypto.kdf import FRANKING_CONTEXT as CLIENT_FRANKING_CONTEXT
from clientlib.wire import capability_hash, encode_map
from relay.config import RelayConfig
from relay.errors import HTTP_STATUS
from relay.franking import (
    FRANKING_CONTEXT,
    KEY_REFRESH_S,
    RELAY_FRANK_CONTEXT,
    FrankingKeyring,
    build_context,
    commitment,
    parse_context,
    relay_tag,
    report_id,
    source_for,
)
from relay.moderation import ModerationError, ModerationService, _content
from relay.storage.base import StoreLimits
from relay.storage.sqlite import SQLiteStore

DAY = 86_400
NOW = 1_780_000_000


def test_labels() -> None:
    assert RELAY_FRANK_CONTEXT == b"blindrelay/v1/relay-frank" + b"\x00"
    assert FRANKING_CONTEXT == CLIENT_FRANKING_CONTEXT  # written out twice, on purpose


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=16, max_size=16),
    st.sampled_from([(0, 0), (1, 32), (2, 16)]),
    st.data(),
)
def test_context_round_trip(kid: int, day: int, sid: bytes, kind: tuple[int, int], data) -> None:  # type: ignore[no-untyped-def]
    src = data.draw(st.binary(min_size=kind[1], max_size=kind[1]))
    ctx = build_context(kid, day, sid, kind[0], src)
    assert ctx == struct.pack(">II", kid, day) + sid + bytes((kind[0],)) + src
    assert len(ctx) <= 64
    parsed = parse_context(ctx)
    assert parsed is not None
    assert (parsed.kid, parsed.day, parsed.sid, parsed.source_kind, parsed.source) == (
        kid,
        day,
        sid,
        kind[0],
        src,
    )


@pytest.mark.parametrize(
    "ctx",
    [
        b"",
        b"\x00" * 24,
        b"\x00" * 24 + b"\x03",  # unknown source kind
        b"\x00" * 24 + b"\x00" + b"x",  # none with a source
        b"\x00" * 24 + b"\x01" + b"x" * 31,  # capability hash too short
        b"\x00" * 24 + b"\x02" + b"x" * 32,  # handle too long
    ],
)
def test_context_rejects(ctx: bytes) -> None:
    assert parse_context(ctx) is None


def test_build_context_rejects() -> None:
    with pytest.raises(ValueError):
        build_context(2**32, 0, b"s" * 16, 0, b"")
    with pytest.raises(ValueError):
        build_context(1, 0, b"s" * 15, 0, b"")
    with pytest.raises(ValueError):
        build_context(1, 0, b"s" * 16, 1, b"h" * 16)


def test_tag_and_report_id_follow_the_spec() -> None:
    key, fc = os.urandom(32), os.urandom(32)
    ctx = build_context(3, 20000, b"s" * 16, 2, b"h" * 16)
    expected = hmac.new(key, b"blindrelay/v1/relay-frank\x00" + fc + ctx, hashlib.sha256).digest()
    assert relay_tag(key, fc, ctx) == expected
    assert report_id(expected) == hashlib.sha256(expected).digest()[:16]


@given(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=300),
    st.lists(st.binary(max_size=50), max_size=16),
)
def test_commitment_matches_the_client(fk: bytes, msg: bytes, atts: list[bytes]) -> None:
    snd, rcp = b"a" * 32, b"b" * 32
    hashes = [hashlib.sha256(a).digest() for a in atts]
    client = franking_commit(fk, sender=snd, recipient=rcp, message=msg, attachment_hashes=hashes)
    assert commitment(fk, snd, rcp, msg, atts) == client
    assert commitment(fk, rcp, snd, msg, atts) != client


def test_source_for() -> None:
    h, hdl = capability_hash(b"s" * 16, b"c" * 32), b"h" * 16
    assert source_for("pair", h, None) == (1, h)
    assert source_for("addr", None, hdl) == (2, hdl)
    assert source_for("open", h, hdl) == (0, b"")


def test_http_statuses() -> None:
    from clientlib.wire import ErrorCode

    assert HTTP_STATUS[ErrorCode.FRANKING] == 403
    assert HTTP_STATUS[ErrorCode.EXPIRED] == 410
    assert HTTP_STATUS[ErrorCode.DUPLICATE] == 409


def test_config_defaults_and_validation() -> None:
    cfg = RelayConfig()
    assert (cfg.franking_rotation_s, cfg.report_window_s) == (7 * DAY, 30 * DAY)
    assert (cfg.report_retention_s, cfg.audit_retention_s, cfg.reports_per_day) == (
        90 * DAY,
        365 * DAY,
        20,
    )
    limits = cfg.store_limits()
    assert (limits.report_window_s, limits.audit_retention_s) == (30 * DAY, 365 * DAY)
    from dataclasses import replace

    from relay.errors import ConfigError

    for bad in (
        {"reports_per_day": 0},
        {"franking_rotation_s": 10},
        {"report_window_s": 0},
        {"report_retention_s": 10},
        {"audit_retention_s": 10},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            replace(cfg, **bad).validate()  # type: ignore[arg-type]


def test_content_decoding() -> None:
    msg = encode_map({"t": "msg", "id": b"i" * 16, "ts": 1, "text": "hello"}, 1)
    assert _content(msg) == ("hello", "msg")
    assert _content(encode_map({"t": "set", "receipts": 1}, 1)) == (None, "set")
    assert _content(b"\x01\xc1") == (None, None)
    assert _content(b"not msgpack at all") == (None, None)
    assert _content(b"") == (None, None)


async def test_keyring_rotation_and_windows(tmp_path: Path) -> None:
    limits = StoreLimits(franking_rotation_s=7 * DAY, report_window_s=30 * DAY)
    store = SQLiteStore(tmp_path / "relay.db", limits)
    await store.open()
    try:
        ring, other = FrankingKeyring(store, limits), FrankingKeyring(store, limits)
        k1 = await ring.current(NOW)
        assert k1.kid == 1 and k1.created == NOW
        assert await other.current(NOW + 5) == k1  # shared by every process
        assert await ring.current(NOW + 7 * DAY - 1) == k1
        # Two processes rotate at once: they agree on one key per kid.
        k2a = await ring.current(NOW + 7 * DAY)
        k2b = await other.current(NOW + 7 * DAY)
        assert k2a == k2b and k2a.kid == 2 and k2a.secret != k1.secret
        assert [k.kid for k in await store.franking_keys()] == [1, 2]
        # The retired key verifies until report_window_s after its retirement.
        assert await ring.verifying(1, NOW + 37 * DAY - 1) == k1
        assert await ring.verifying(1, NOW + 37 * DAY) is None
        assert await ring.verifying(2, NOW + 37 * DAY) == k2a  # current: always
        assert await ring.verifying(99, NOW) is None
        # A key created by another process is found on an unknown kid (no stale cache).
        k3 = await other.current(NOW + 14 * DAY)
        assert await ring.verifying(3, NOW + 14 * DAY) == k3
        # The cache is re-read after KEY_REFRESH_S.
        assert await ring.current(NOW + 14 * DAY + KEY_REFRESH_S) == k3
    finally:
        await store.aclose()


async def test_moderation_argument_checks(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db", StoreLimits())
    await store.open()
    try:
        mod = ModerationService(store, RelayConfig(), clock=lambda: NOW)
        rid = os.urandom(16).hex()
        for kwargs, match in (
            ({"action": "ban", "moderator": "ann"}, "action"),
            ({"action": "none", "moderator": ""}, "moderator"),
            ({"action": "none", "moderator": "relay"}, "moderator"),
            ({"action": "none", "moderator": "x" * 65}, "moderator"),
            ({"action": "none", "moderator": "ann\n"}, "moderator"),
            ({"action": "none", "moderator": "ann", "note": "n" * 4001}, "note"),
            ({"action": "none", "moderator": "ann", "suspend_sid": b"s" * 16}, "suspend_sid"),
            ({"action": "suspend", "moderator": "ann", "suspend_sid": b"s"}, "suspend_sid"),
            ({"action": "none", "moderator": "ann"}, "no report"),
        ):
            with pytest.raises(ModerationError, match=match):
                await mod.resolve(rid, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ModerationError, match="no report"):
            await mod.resolve("not hex", action="none", moderator="ann")
        with pytest.raises(ModerationError, match="status"):
            await mod.list_reports(status="closed")
        with pytest.raises(ModerationError, match="sid"):
            await mod.unsuspend(b"s", moderator="ann")
        assert await mod.list_reports() == []
        assert await mod.get_report(rid) is None
        assert await mod.audit() == []
    finally:
        await store.aclose()


async def test_keyring_forgets_the_moderator_key_of_a_destroyed_franking_key(
    tmp_path: Path,
) -> None:
    limits = StoreLimits(franking_rotation_s=7 * DAY, report_window_s=30 * DAY)
    store = SQLiteStore(tmp_path / "relay.db", limits)
    await store.open()
    try:
        ring = FrankingKeyring(store, limits)
        k1 = await ring.current(NOW)
        m1 = ring.judge(k1).public
        assert (1, m1) in await ring.moderator_keys(NOW)
        await ring.current(NOW + 7 * DAY)  # k1 retires
        later = NOW + 7 * DAY + 30 * DAY + 1  # past its report window
        await store.purge_expired(later)  # destroys k1
        ring.forget()
        keys = await ring.moderator_keys(later)
        assert all(kid != 1 for kid, _ in keys)
        assert 1 not in ring._judges  # the derived secret went with the franking key
    finally:
        await store.aclose()
