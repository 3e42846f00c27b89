"""Prekey hosting on the wire (protocol.md §4.7): round trips, shape rules and size bounds."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.errors import LocalProtocolError, WireError
from clientlib.transport.base import prekey_chunks
from clientlib.wire import (
    MAX_FRAME_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_PREKEY_UPLOAD,
    MAX_RELAY_FRAME_SIZE,
    OP_PREKEYS,
    OWNER_OPS,
    BundleIssued,
    FetchBundle,
    OwnerCommand,
    PreKeysStored,
    RequestChallenge,
    SignedOwnerCommand,
    decode_client_frame,
    decode_owner_command,
    decode_relay_frame,
)

NONCE = b"n" * 32
RID = b"r" * 16
blobs = st.binary(min_size=1, max_size=MAX_PREKEY_ITEM_SIZE)


def keys(**fields: object) -> OwnerCommand:
    base: dict[str, object] = {"op": "keys", "nonce": NONCE, "rid": RID}
    base.update(fields)
    return OwnerCommand(**base)  # type: ignore[arg-type]


def raw_command(fields: dict[str, object]) -> bytes:
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


@given(
    st.none() | st.binary(min_size=1, max_size=MAX_PREKEY_STATIC_SIZE),
    st.none() | st.lists(blobs, max_size=MAX_PREKEY_UPLOAD).map(tuple),
    st.none() | st.sampled_from([0, 1]),
)
def test_keys_command_round_trip(
    static: bytes | None, otk: tuple[bytes, ...] | None, replace: int | None
) -> None:
    cmd = keys(static=static, otk=otk, replace=replace)
    assert decode_owner_command(cmd.encode()) == cmd


def test_new_frames_round_trip() -> None:
    assert OP_PREKEYS == "keys" and OP_PREKEYS in OWNER_OPS
    chal = RequestChallenge(id=1, op="keys", rid=RID)
    assert decode_client_frame(chal.encode()) == (1, chal)
    fetch = FetchBundle(id=2, sid=b"s" * 16)
    assert decode_client_frame(fetch.encode()) == (1, fetch)
    for frame in (
        PreKeysStored(id=3, left=0, static=0),
        PreKeysStored(id=4, left=200, static=1),
        BundleIssued(id=5, static=b"s" * MAX_PREKEY_STATIC_SIZE, otk=b"o" * MAX_PREKEY_ITEM_SIZE),
        BundleIssued(id=6, static=b"s"),
    ):
        assert decode_relay_frame(frame.encode()) == (1, frame)
    # The two directions have separate registries: "bundle" and "keys" mean different frames.
    with pytest.raises(WireError):
        decode_client_frame(BundleIssued(id=7, static=b"s").encode())
    with pytest.raises(WireError):
        decode_relay_frame(fetch.encode())
    assert fetch.encode()[1:] == msgpack.packb({"t": "bundle", "id": 2, "sid": b"s" * 16})


def test_status_query_and_changes() -> None:
    assert keys().is_prekey_query
    assert keys(replace=0, otk=()).is_prekey_query
    assert not keys(replace=1).is_prekey_query
    assert not keys(static=b"s").is_prekey_query
    assert not keys(otk=(b"o",)).is_prekey_query
    assert not OwnerCommand(op="sub", nonce=NONCE, rid=RID).is_prekey_query


@pytest.mark.parametrize(
    "cmd",
    [
        keys(rid=None),  # keys needs rid
        keys(key=b"k" * 32),
        keys(ack=(1,)),
        keys(max=3),
        OwnerCommand(op="sub", nonce=NONCE, rid=RID, static=b"s"),
        OwnerCommand(op="delete", nonce=NONCE, rid=RID, otk=(b"o",)),
        OwnerCommand(op="fetch", nonce=NONCE, rid=RID, replace=0),
        OwnerCommand(op="fetch", nonce=NONCE, rid=RID, static=b"s", max=1),
        OwnerCommand(op="create", nonce=NONCE, key=b"k" * 32, otk=()),
    ],
)
def test_keys_shape_rules(cmd: OwnerCommand) -> None:
    with pytest.raises(WireError) as info:
        decode_owner_command(cmd.encode())
    assert info.value.code == "MALFORMED"


@pytest.mark.parametrize(
    "fields",
    [
        {"static": b""},
        {"static": b"s" * (MAX_PREKEY_STATIC_SIZE + 1)},
        {"static": "text"},
        {"otk": [b""]},
        {"otk": [b"o" * (MAX_PREKEY_ITEM_SIZE + 1)]},
        {"otk": [b"o"] * (MAX_PREKEY_UPLOAD + 1)},
        {"otk": b"o"},
        {"otk": [[b"o"]]},
        {"replace": 2},
        {"replace": -1},
        {"replace": True},
        {"static": b"s", "extra": 1},
    ],
)
def test_keys_field_bounds(fields: dict[str, object]) -> None:
    data = raw_command({"op": "keys", "nonce": NONCE, "rid": RID, **fields})
    with pytest.raises(WireError) as info:
        decode_owner_command(data)
    assert info.value.code == "MALFORMED"


def test_relay_frame_bounds() -> None:
    for fields in (
        {"t": "keys", "id": 1, "left": -1, "static": 0},
        {"t": "keys", "id": 1, "left": 1, "static": 2},
        {"t": "keys", "id": 1, "left": 1},
        {"t": "bundle", "id": 1},
        {"t": "bundle", "id": 1, "static": b""},
        {"t": "bundle", "id": 1, "static": b"s", "otk": b""},
        {"t": "bundle", "id": 1, "static": b"s", "otk": b"o" * (MAX_PREKEY_ITEM_SIZE + 1)},
    ):
        with pytest.raises(WireError):
            decode_relay_frame(raw_command(fields))
    for fields in ({"t": "bundle", "id": 1}, {"t": "bundle", "id": 1, "sid": b"s" * 15}):
        with pytest.raises(WireError):
            decode_client_frame(raw_command(fields))


def test_size_limits_fit_a_full_upload() -> None:
    full = keys(
        static=b"s" * MAX_PREKEY_STATIC_SIZE,
        otk=tuple(b"o" * MAX_PREKEY_ITEM_SIZE for _ in range(MAX_PREKEY_UPLOAD)),
        replace=1,
    ).encode()
    assert len(full) <= MAX_OWNER_COMMAND_SIZE
    assert decode_owner_command(full).otk is not None
    # The largest owner command still fits in the largest frame, request id and all.
    own = SignedOwnerCommand(id=2**32 - 1, cmd=b"c" * MAX_OWNER_COMMAND_SIZE, sig=b"g" * 64)
    assert len(own.encode()) <= MAX_FRAME_SIZE
    assert decode_client_frame(own.encode())[1] == own
    bigger = raw_command({"t": "own", "id": 1, "cmd": b"c" * (MAX_OWNER_COMMAND_SIZE + 1)})
    with pytest.raises(WireError):
        decode_client_frame(bigger)
    with pytest.raises(WireError) as info:
        decode_owner_command(b"\x01" + b"\x00" * MAX_OWNER_COMMAND_SIZE)
    assert info.value.code == "TOO_LARGE"
    bundle = BundleIssued(
        id=2**32 - 1, static=b"s" * MAX_PREKEY_STATIC_SIZE, otk=b"o" * MAX_PREKEY_ITEM_SIZE
    )
    assert len(bundle.encode()) <= MAX_RELAY_FRAME_SIZE


def test_prekey_chunks() -> None:
    assert prekey_chunks(None, (), False) == [(None, None, None)]
    assert prekey_chunks(b"s", (), True) == [(b"s", None, 1)]
    items = [bytes([i + 1]) for i in range(70)]
    chunks = prekey_chunks(b"s", items, True)
    assert [len(c[1] or ()) for c in chunks] == [32, 32, 6]
    assert [(c[0], c[2]) for c in chunks] == [(b"s", 1), (None, None), (None, None)]
    assert [i for c in chunks for i in c[1] or ()] == items
    assert prekey_chunks(None, items[:2], False) == [(None, tuple(items[:2]), None)]
    for static, one_time in (
        (b"", ()),
        (b"s" * (MAX_PREKEY_STATIC_SIZE + 1), ()),
        (None, [b""]),
        (None, [b"o" * (MAX_PREKEY_ITEM_SIZE + 1)]),
    ):
        with pytest.raises(LocalProtocolError):
            prekey_chunks(static, one_time, False)
