"""The shared codec: round trips, and decoding never fails except with WireError."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.errors import WireError
from clientlib.wire import (
    ENVELOPE_BUCKETS,
    Ack,
    Deposit,
    EnvelopeDelivered,
    EnvelopesFetched,
    OwnerCommand,
    StoredEnvelope,
    VersionRange,
    bucket_for,
    decode_client_frame,
    decode_owner_command,
    decode_relay_frame,
    negotiate,
)

ids16 = st.binary(min_size=16, max_size=16)
u32 = st.integers(0, 2**32 - 1)


@given(
    u32,
    ids16,
    ids16,
    st.sampled_from([0, 1]),
    st.sampled_from(ENVELOPE_BUCKETS[:3]),
    st.none() | st.binary(min_size=32, max_size=32),
)
def test_deposit_round_trip(
    i: int, sid: bytes, eid: bytes, flags: int, n: int, fc: bytes | None
) -> None:
    frame = Deposit(id=i, sid=sid, eid=eid, flags=flags, ct=bytes(n), fc=fc)
    assert decode_client_frame(frame.encode()) == (1, frame)


@given(st.lists(st.integers(1, 2**63 - 1), max_size=256), ids16)
def test_ack_round_trip(seqs: list[int], rid: bytes) -> None:
    frame = Ack(id=1, rid=rid, seqs=tuple(seqs))
    assert decode_client_frame(frame.encode())[1] == frame


@given(st.lists(st.tuples(st.integers(0, 2**40), ids16, st.integers(0, 2**40)), max_size=5))
def test_relay_frames_round_trip(items: list[tuple[int, bytes, int]]) -> None:
    envs = tuple(StoredEnvelope(seq=s, eid=e, ts=t, flags=0, ct=b"c") for s, e, t in items)
    frame = EnvelopesFetched(id=3, envs=envs, more=0)
    assert decode_relay_frame(frame.encode())[1] == frame
    if envs:
        push = EnvelopeDelivered(rid=b"r" * 16, env=envs[0])
        assert decode_relay_frame(push.encode())[1] == push


@given(st.binary(max_size=300))
def test_decoding_random_bytes_only_raises_wire_error(data: bytes) -> None:
    for decode in (decode_client_frame, decode_relay_frame, decode_owner_command):
        with contextlib.suppress(WireError):
            decode(data)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=5)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)


@given(
    st.dictionaries(
        st.sampled_from(["t", "id", "sid", "eid", "flags", "ct", "fc", "rid", "seqs", "x"]),
        values,
        max_size=7,
    )
)
def test_decoding_random_maps_only_raises_wire_error(fields: dict[str, object]) -> None:
    data = b"\x01" + msgpack.packb(fields, use_bin_type=True)
    try:
        decode_client_frame(data)
    except WireError as exc:
        assert exc.code in ("MALFORMED", "VERSION", "TOO_LARGE")


def test_owner_command_shapes() -> None:
    nonce = b"n" * 32
    ok = OwnerCommand(op="create", nonce=nonce, key=b"k" * 32)
    assert decode_owner_command(ok.encode()) == ok
    for bad in (
        OwnerCommand(op="create", nonce=nonce),
        OwnerCommand(op="create", nonce=nonce, key=b"k" * 32, rid=b"r" * 16),
        OwnerCommand(op="sub", nonce=nonce),
        OwnerCommand(op="sub", nonce=nonce, rid=b"r" * 16, ack=(1,)),
        OwnerCommand(op="delete", nonce=nonce, rid=b"r" * 16, max=3),
    ):
        with pytest.raises(WireError):
            decode_owner_command(bad.encode())


def test_buckets_and_versions() -> None:
    assert ENVELOPE_BUCKETS == (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
    assert bucket_for(1) == 256 and bucket_for(257) == 512 and bucket_for(65536) == 65536
    with pytest.raises(ValueError):
        bucket_for(65537)
    assert negotiate(VersionRange(1, 3), VersionRange(2, 5)) == 3
    assert negotiate(VersionRange(1, 1), VersionRange(2, 2)) is None
    with pytest.raises(ValueError):
        VersionRange(0, 1)
