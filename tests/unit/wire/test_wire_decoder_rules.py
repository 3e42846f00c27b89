"""protocol.md §2.2 decoder rules stated precisely in revision 6, one test per rule.

Integers are judged by value, not encoding (non-shortest accepted); ranges are inclusive;
invalid UTF-8 is MALFORMED; the length bound of a declared container is the whole msgpack
part; an owner command carries ``op``, and a ``t`` in it is an unknown field; nesting is
counted from the top-level map as level 1.
"""

from __future__ import annotations

import os
import struct

import msgpack
import pytest

from clientlib.client.content import TextMessage, decode_content
from clientlib.errors import WireError
from clientlib.wire import decode_client_frame, decode_relay_frame
from clientlib.wire.frames import decode_owner_command


def dep_fields(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "t": "dep",
        "id": 5,
        "sid": os.urandom(16),
        "eid": os.urandom(16),
        "flags": 0,
        "ct": bytes(256),
    }
    base.update(over)
    return base


def test_non_shortest_integer_encodings_are_accepted_by_value() -> None:
    fields = dep_fields()
    packed = msgpack.packb(fields, use_bin_type=True)
    # Re-encode id = 5 as uint64 (0xcf) and flags = 0 as uint32 (0xce).
    shortest_id = msgpack.packb("id") + msgpack.packb(5)
    long_id = msgpack.packb("id") + b"\xcf" + struct.pack(">Q", 5)
    shortest_flags = msgpack.packb("flags") + msgpack.packb(0)
    long_flags = msgpack.packb("flags") + b"\xce" + struct.pack(">I", 0)
    assert shortest_id in packed and shortest_flags in packed
    data = b"\x01" + packed.replace(shortest_id, long_id).replace(shortest_flags, long_flags)
    _, frame = decode_client_frame(data)
    assert frame.id == 5 and frame.flags == 0  # type: ignore[union-attr]
    # A negative encoding (int8) of a non-negative value is judged by value too.
    signed = b"\x01" + packed.replace(shortest_id, msgpack.packb("id") + b"\xd0\x05")
    assert decode_client_frame(signed)[1].id == 5  # type: ignore[union-attr]


def test_ranges_are_inclusive() -> None:
    mid = os.urandom(16)
    at_bound = TextMessage(id=mid, ts=2**40, text="x").encode()
    assert decode_content(at_bound) == TextMessage(id=mid, ts=2**40, text="x")
    over = b"\x01" + msgpack.packb({"t": "msg", "id": mid, "ts": 2**40 + 1, "text": "x"})
    with pytest.raises(WireError):
        decode_content(over)
    # bin(256..65536): 65,536 bytes is in, 65,537 is out.
    decode_client_frame(b"\x01" + msgpack.packb(dep_fields(ct=bytes(65536)), use_bin_type=True))
    with pytest.raises(WireError) as refused:
        decode_client_frame(b"\x01" + msgpack.packb(dep_fields(ct=bytes(65537)), use_bin_type=True))
    assert refused.value.code == "MALFORMED"


def test_invalid_utf8_is_malformed_in_values_and_keys() -> None:
    bad_value = b"\x01\x82\xa1t\xa3dep\xa2id\xa2\xff\xfe"
    bad_key = b"\x01\x81\xa2\xff\xfe\x01"
    for data in (bad_value, bad_key):
        with pytest.raises(WireError) as refused:
            decode_client_frame(data)
        assert refused.value.code == "MALFORMED"


def test_declared_lengths_are_bounded_by_the_whole_msgpack_part() -> None:
    # An array declaring 3 items in a 4-byte msgpack part: within the bound, but truncated.
    with pytest.raises(WireError):
        decode_client_frame(b"\x01\x81\xa1t\x93")
    # A bin declaring more bytes than the msgpack part has: refused before allocating.
    with pytest.raises(WireError):
        decode_client_frame(b"\x01\x81\xa1t\xc5\x01\x00" + bytes(10))


def test_owner_commands_are_named_by_op_and_t_is_unknown() -> None:
    good = {"op": "info", "nonce": os.urandom(32), "rid": os.urandom(16)}
    assert decode_owner_command(b"\x01" + msgpack.packb(good, use_bin_type=True)).op == "info"
    with_t = {"t": "own", **good}
    with pytest.raises(WireError):
        decode_owner_command(b"\x01" + msgpack.packb(with_t, use_bin_type=True))


def test_nesting_counts_the_top_level_map_as_level_one() -> None:
    # envs: map (1) -> array (2) -> stored envelope map (3) decodes ...
    env = {"seq": 1, "eid": os.urandom(16), "ts": 1, "flags": 0, "ct": bytes(256)}
    envs = {"t": "envs", "id": 1, "envs": [env], "more": 0}
    decode_relay_frame(b"\x01" + msgpack.packb(envs, use_bin_type=True))
    # ... and a fourth level where the schema has a scalar is MALFORMED.
    deeper = {**envs, "envs": [{**env, "seq": [1]}]}
    with pytest.raises(WireError):
        decode_relay_frame(b"\x01" + msgpack.packb(deeper, use_bin_type=True))
