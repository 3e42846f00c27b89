"""Consent on the wire (protocol.md §4.8-§4.10, revision 3): round trips, shape rules, bounds,
proof of work and capability hashes."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.errors import LocalProtocolError, WireError
from clientlib.transport.base import create_fields, deposit_fields, id_list
from clientlib.wire import (
    BOUNDARY_SIZES,
    DEFAULT_BOUNDARIES,
    MAX_ATTACHMENT_REFS,
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    OWNER_OPS,
    Boundaries,
    BoundariesIssued,
    BundleIssued,
    Deposit,
    ErrorCode,
    ErrorReply,
    GetBoundaries,
    GetPow,
    MailboxInfo,
    OwnerCommand,
    PowIssued,
    RequestChallenge,
    StoredEnvelope,
    capability_hash,
    decode_client_frame,
    decode_owner_command,
    decode_relay_frame,
    leading_zero_bits,
    pow_digest,
    pow_valid,
    solve,
)

NONCE = b"n" * 32
RID = b"r" * 16
SID = bytes(range(16))
KEY = b"k" * 32
H = b"h" * 32
HDL = b"d" * 16


def raw(fields: dict[str, object]) -> bytes:
    return b"\x01" + msgpack.packb(fields, use_bin_type=True)


def bad_command(fields: dict[str, object]) -> None:
    with pytest.raises(WireError) as info:
        decode_owner_command(raw({"nonce": NONCE, **fields}))
    assert info.value.code == "MALFORMED"


boundaries = st.builds(
    Boundaries,
    size=st.sampled_from(BOUNDARY_SIZES),
    att=st.sampled_from([0, 1]),
    day=st.integers(1, 100_000),
    pow=st.integers(0, 32),
)
hashes = st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_CAPS_PER_COMMAND).map(tuple)
handles = st.lists(st.binary(min_size=16, max_size=16), max_size=MAX_BANS_PER_COMMAND).map(tuple)


# --- owner commands -------------------------------------------------------------------------


@given(st.sampled_from(["open", "pair", "addr"]), st.none() | boundaries)
def test_create_round_trip(kind: str, bnd: Boundaries | None) -> None:
    if bnd is not None and kind != "addr":
        return
    cmd = OwnerCommand(op="create", nonce=NONCE, key=KEY, kind=kind, bnd=bnd)
    assert decode_owner_command(cmd.encode()) == cmd


@given(st.none() | hashes, st.none() | hashes)
def test_caps_round_trip(add: tuple[bytes, ...] | None, remove: tuple[bytes, ...] | None) -> None:
    cmd = OwnerCommand(op="caps", nonce=NONCE, rid=RID, add=add, remove=remove)
    assert decode_owner_command(cmd.encode()) == cmd
    if remove:
        assert b"\xa3del" in cmd.encode()  # the wire key is "del"


@given(st.none() | handles, st.none() | handles, boundaries)
def test_ban_bnd_info_round_trip(
    ban: tuple[bytes, ...] | None, unban: tuple[bytes, ...] | None, bnd: Boundaries
) -> None:
    for cmd in (
        OwnerCommand(op="ban", nonce=NONCE, rid=RID, hdl=ban, unban=unban),
        OwnerCommand(op="bnd", nonce=NONCE, rid=RID, bnd=bnd),
        OwnerCommand(op="info", nonce=NONCE, rid=RID),
    ):
        assert decode_owner_command(cmd.encode()) == cmd


def test_new_ops_and_challenges() -> None:
    assert {"caps", "bnd", "ban", "info"} <= set(OWNER_OPS)
    assert "pow" not in OWNER_OPS  # a pow nonce's binding can never be an owner challenge's
    for op in ("caps", "bnd", "ban", "info"):
        chal = RequestChallenge(id=1, op=op, rid=RID)
        assert decode_client_frame(chal.encode()) == (1, chal)


def test_owner_command_shape_rules() -> None:
    bnd = DEFAULT_BOUNDARIES.to_map()
    rid = {"rid": RID}
    for fields in (
        {"op": "create", "key": KEY, "kind": "pair", "bnd": bnd},  # bnd: addr only
        {"op": "create", "key": KEY, "bnd": bnd},  # kind absent = open
        {"op": "create", "key": KEY, "kind": "group"},
        {"op": "create", "key": KEY, "kind": "addr", "add": [H]},
        {"op": "sub", **rid, "kind": "pair"},
        {"op": "caps", "add": [H]},  # no rid
        {"op": "caps", **rid, "hdl": [HDL]},
        {"op": "caps", **rid, "add": [H[:31]]},
        {"op": "caps", **rid, "add": [H] * (MAX_CAPS_PER_COMMAND + 1)},
        {"op": "caps", **rid, "del": H},  # not a list
        {"op": "bnd", **rid},  # bnd required
        {"op": "bnd", **rid, "bnd": bnd, "add": [H]},
        {"op": "ban", **rid, "hdl": [HDL + b"x"]},
        {"op": "ban", **rid, "unban": [HDL] * (MAX_BANS_PER_COMMAND + 1)},
        {"op": "ban", **rid, "bnd": bnd},
        {"op": "info", **rid, "max": 1},
        {"op": "info"},
        {"op": "keys", **rid, "add": [H]},
        {"op": "fetch", **rid, "unban": [HDL]},
    ):
        bad_command(fields)


def test_boundaries_bounds() -> None:
    assert BOUNDARY_SIZES == (2048, 4096, 8192, 16384, 32768, 65536)
    assert Boundaries(size=4096, att=0, day=100, pow=0) == DEFAULT_BOUNDARIES
    good = {"size": 2048, "att": 1, "day": 100_000, "pow": 32}
    assert decode_owner_command(raw({"op": "bnd", "nonce": NONCE, "rid": RID, "bnd": good}))
    for change in (
        {"size": 1024},
        {"size": 3000},
        {"size": 131072},
        {"att": 2},
        {"att": True},
        {"day": 0},
        {"day": 100_001},
        {"pow": 33},
        {"pow": -1},
        {"x": 1},
    ):
        bad_command({"op": "bnd", "rid": RID, "bnd": {**good, **change}})
    missing = dict(good)
    del missing["pow"]
    bad_command({"op": "bnd", "rid": RID, "bnd": missing})


# --- sender frames ----------------------------------------------------------------------------


def test_sender_frames_round_trip() -> None:
    full = Deposit(
        id=1,
        sid=SID,
        eid=b"e" * 16,
        flags=0,
        ct=b"c" * 2048,
        fc=b"f" * 32,
        cap=b"p" * 32,
        hdl=HDL,
        att=(b"a" * 16,) * MAX_ATTACHMENT_REFS,
        pow=b"w" * 16,
        pwc=2**64 - 1,
    )
    for frame in (
        full,
        Deposit(id=2, sid=SID, eid=b"e" * 16, flags=0, ct=b"c" * 256, cap=b"p" * 32),
        GetBoundaries(id=3, sid=SID),
        GetPow(id=4, sid=SID),
    ):
        assert decode_client_frame(frame.encode()) == (1, frame)
    assert GetBoundaries(id=3, sid=SID).encode()[1:] == msgpack.packb(
        {"t": "bnd?", "id": 3, "sid": SID}
    )
    base = {"t": "dep", "id": 1, "sid": SID, "eid": b"e" * 16, "flags": 0, "ct": b"c" * 256}
    for change in (
        {"cap": b"p" * 31},
        {"hdl": b"d" * 17},
        {"att": [b"a" * 16] * (MAX_ATTACHMENT_REFS + 1)},
        {"att": [b"a" * 15]},
        {"pow": b"w" * 32},
        {"pwc": -1},
        {"pwc": True},
    ):
        with pytest.raises(WireError):
            decode_client_frame(raw({**base, **change}))
    for t in ("bnd?", "pow?"):
        with pytest.raises(WireError):
            decode_client_frame(raw({"t": t, "id": 1, "sid": SID[:15]}))
        with pytest.raises(WireError):
            decode_client_frame(raw({"t": t, "id": 1}))


def test_relay_frames_round_trip() -> None:
    bnd = Boundaries(size=8192, att=1, day=5, pow=9)
    info = MailboxInfo(
        id=7,
        kind="addr",
        sid=SID,
        owner_key=KEY,
        created_day=20_000,
        active_day=20_001,
        last_seq=12,
        envelopes=3,
        stored_bytes=3 * 4096,
        oldest_ts=20_000 * 86_400,
        dedupe_records=12,
        prekeys_left=20,
        prekey_static=1,
        prekey_hour=480_024,
        prekeys_handed=4,
        caps=0,
        bnd=bnd,
        bans=2,
        requests_day=20_001,
        requests=3,
        requests_today=3,
    )
    sparse = MailboxInfo(
        id=8,
        kind="pair",
        sid=SID,
        owner_key=KEY,
        created_day=1,
        active_day=1,
        last_seq=0,
        envelopes=0,
        stored_bytes=0,
        oldest_ts=None,
        dedupe_records=0,
        prekeys_left=0,
        prekey_static=0,
        prekey_hour=None,
        prekeys_handed=0,
        caps=64,
        bnd=None,
        bans=0,
        requests_day=None,
        requests=0,
        requests_today=0,
    )
    for frame in (
        BoundariesIssued(id=1, bnd=bnd),
        PowIssued(id=2, nonce=b"w" * 16, bits=20, exp=1_750_000_300),
        BundleIssued(id=3, static=b"s", bnd=bnd),
        info,
        sparse,
        ErrorReply(code="BOUNDARY", id=4),
        ErrorReply(code="POW", id=5),
    ):
        assert decode_relay_frame(frame.encode()) == (1, frame)
    assert "bytes" in info.to_map() and "stored_bytes" not in info.to_map()
    env = StoredEnvelope(seq=1, eid=b"e" * 16, ts=5, flags=0, ct=b"c" * 256, hdl=HDL)
    assert StoredEnvelope.from_map(env.to_map()) == env
    # Client and relay registries stay apart: "bnd" and "pow" are relay frames only.
    with pytest.raises(WireError):
        decode_client_frame(BoundariesIssued(id=1, bnd=bnd).encode())
    with pytest.raises(WireError):
        decode_relay_frame(GetPow(id=1, sid=SID).encode())
    with pytest.raises(WireError):
        decode_relay_frame(raw({"t": "pow", "id": 1, "nonce": b"w" * 16, "bits": 33, "exp": 0}))
    assert {ErrorCode.BOUNDARY.value, ErrorCode.POW.value} == {"BOUNDARY", "POW"}


# --- proof of work and capability hashes ------------------------------------------------------

NONCE16 = bytes(range(16, 32))
EID = bytes(range(32, 48))


def test_pow_known_vector() -> None:
    # protocol.md §4.9: SHA-256("blindrelay/v1/pow" 0x00 sid nonce eid u64be(counter)).
    expected = "4d663f7b41cb67c9b459be3756d6c91d7ae34e3238f0e414a6133247849b1580"
    assert pow_digest(SID, NONCE16, EID, 1).hex() == expected
    independent = hashlib.sha256(
        b"blindrelay/v1/pow\x00" + SID + NONCE16 + EID + (1).to_bytes(8, "big")
    ).hexdigest()
    assert independent == expected
    # The smallest counter with 12 leading zero bits, and its digest.
    assert solve(SID, NONCE16, EID, 12) == 90
    assert pow_digest(SID, NONCE16, EID, 90).hex().startswith("0008")
    assert leading_zero_bits(pow_digest(SID, NONCE16, EID, 90)) == 12


def test_capability_hash_vector_and_binding() -> None:
    cap = bytes(range(48, 80))
    expected = "8d9a90867eda65283249a8f91df312c67722a7ebbd1034ba8bece7094f99969a"
    assert capability_hash(SID, cap).hex() == expected
    assert hashlib.sha256(b"blindrelay/v1/cap\x00" + SID + cap).hexdigest() == expected
    assert capability_hash(bytes(16), cap) != capability_hash(SID, cap)  # bound to its mailbox
    with pytest.raises(ValueError):
        capability_hash(SID, cap[:31])
    with pytest.raises(ValueError):
        capability_hash(SID[:15], cap)


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(bytes(32)) == 256
    assert leading_zero_bits(b"\x80" + bytes(31)) == 0
    assert leading_zero_bits(b"\x01" + bytes(31)) == 7
    assert leading_zero_bits(b"\x00\x00\x10" + b"\xff" * 29) == 19
    assert leading_zero_bits(b"\x00\x00\x00\x00\xff") == 32
    for n in range(0, 256):
        digest = (1 << (255 - n)).to_bytes(32, "big")
        assert leading_zero_bits(digest) == n


@pytest.mark.parametrize("bits", [0, 1, 4, 8, 10])
def test_solve_finds_a_valid_counter(bits: int) -> None:
    eid = hashlib.sha256(bytes([bits])).digest()[:16]
    counter = solve(SID, NONCE16, eid, bits)
    assert pow_valid(SID, NONCE16, eid, counter, bits)
    # It is the smallest one.
    assert not any(pow_valid(SID, NONCE16, eid, c, bits) for c in range(counter))
    # Bound to sid, nonce and eid.
    if bits >= 8:
        assert not pow_valid(SID, NONCE16, bytes(16), counter, bits) or counter == solve(
            SID, NONCE16, bytes(16), bits
        )


def test_pow_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        solve(SID, NONCE16, EID, 33)
    with pytest.raises(ValueError):
        pow_digest(SID, NONCE16[:15], EID, 0)
    with pytest.raises(ValueError):
        pow_digest(SID, NONCE16, EID, 2**64)


# --- transport-side checks --------------------------------------------------------------------


def test_transport_field_checks() -> None:
    assert create_fields("open", None) == {"kind": None, "bnd": None}  # rev-2 relays accept it
    assert create_fields("addr", DEFAULT_BOUNDARIES)["kind"] == "addr"
    with pytest.raises(LocalProtocolError):
        create_fields("pair", DEFAULT_BOUNDARIES)
    with pytest.raises(LocalProtocolError):
        create_fields("group", None)
    assert id_list([], 32, 64, "x") is None
    with pytest.raises(LocalProtocolError):
        id_list([H] * 65, 32, 64, "x")
    with pytest.raises(LocalProtocolError):
        id_list([H[:5]], 32, 64, "x")
    fields = deposit_fields(b"p" * 32, HDL, [b"a" * 16], (b"w" * 16, 7))
    assert fields == {
        "cap": b"p" * 32,
        "hdl": HDL,
        "att": (b"a" * 16,),
        "pow": b"w" * 16,
        "pwc": 7,
    }
    for args in (
        (b"p" * 31, None, (), None),
        (None, b"d", (), None),
        (None, None, [b"a" * 16] * 17, None),
        (None, None, (), (b"w" * 16, -1)),
        (None, None, (), (b"w" * 15, 1)),
    ):
        with pytest.raises(LocalProtocolError):
            deposit_fields(*args)  # type: ignore[arg-type]
