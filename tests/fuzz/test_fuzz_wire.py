"""Fuzz every wire decoder (protocol.md §2.2): client and relay frames, owner commands, and
the Part III contents (§22.1). Whatever the bytes, a decoder returns a structure or raises
:class:`~clientlib.errors.WireError` (the relay maps it to ``MALFORMED``, ``VERSION`` or
``TOO_LARGE``); nothing else escapes, and what it returns encodes back to bytes that decode
to the same structure."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from fuzzkit import binary, client_vectors, fuzz, golden_frames, msgpack_values, mutated
from hypothesis import given
from hypothesis import strategies as st

from clientlib.client.content import decode_content
from clientlib.errors import WireError
from clientlib.wire import MAX_FRAME_SIZE, decode_client_frame, decode_relay_frame
from clientlib.wire.owner import decode_owner_command, decode_owner_op

GOLDEN = golden_frames()
SEEDS = sorted(GOLDEN.values())
CONTENT_SEEDS = sorted(bytes.fromhex(c["encoded"]) for c in client_vectors()["content"])


def _names(seeds: list[bytes]) -> tuple[list[str], list[str]]:
    """Every map key and every ``t``/``op`` value in the seeds: a structured draw then
    names real fields and types, not only random ones."""
    keys: set[str] = set()
    tags: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                keys.add(str(k))
                if k in ("t", "op") and isinstance(v, str):
                    tags.add(v)
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    for seed in seeds:
        try:
            walk(msgpack.unpackb(seed[1:], raw=False, strict_map_key=False))
        except Exception:  # a seed that is not msgpack after byte 0 (none today)
            continue
    return sorted(keys), sorted(tags)


KEYS, TAGS = _names(SEEDS + CONTENT_SEEDS)


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A well-formed msgpack map of real field names and types, with random values."""
    fields = draw(st.dictionaries(st.sampled_from(KEYS), msgpack_values, max_size=8))
    if draw(st.booleans()):
        fields[draw(st.sampled_from(["t", "op"]))] = draw(st.sampled_from(TAGS))
    version = draw(st.sampled_from([1, 1, 1, 0, 2]))
    return bytes([version]) + msgpack.packb(fields, use_bin_type=True)


inputs = st.one_of(
    binary(max_size=200),
    mutated(SEEDS),
    structured(),
    st.sampled_from(SEEDS),
)


def _client(data: bytes) -> None:
    try:
        version, frame = decode_client_frame(data, max_size=MAX_FRAME_SIZE)
    except WireError:
        return
    assert decode_client_frame(frame.encode(version), max_size=MAX_FRAME_SIZE) == (version, frame)


def _relay(data: bytes) -> None:
    try:
        version, frame = decode_relay_frame(data)
    except WireError:
        return
    assert decode_relay_frame(frame.encode(version)) == (version, frame)


def _owner(data: bytes) -> None:
    try:
        cmd = decode_owner_command(data)
    except WireError:
        cmd = None
    if cmd is not None:
        assert decode_owner_command(cmd.encode()) == cmd
    with contextlib.suppress(WireError):
        decode_owner_op(data)


@fuzz(400)
@given(inputs)
def test_client_frames(data: bytes) -> None:
    _client(data)


@fuzz(400)
@given(inputs)
def test_relay_frames(data: bytes) -> None:
    _relay(data)


@fuzz(300)
@given(inputs)
def test_owner_commands(data: bytes) -> None:
    _owner(data)


@fuzz(300)
@given(st.one_of(binary(max_size=200), mutated(CONTENT_SEEDS), structured()))
def test_contents(data: bytes) -> None:
    try:
        content = decode_content(data)
    except WireError:
        return
    assert decode_content(content.encode()) == content


def test_the_seeds_decode() -> None:
    """The mutation seeds are valid structures (else the fuzzing starts from noise)."""
    decoded = 0
    for data in SEEDS:
        for decode in (
            lambda d: decode_client_frame(d, max_size=MAX_FRAME_SIZE),
            decode_relay_frame,
            decode_owner_command,
        ):
            try:
                decode(data)
                decoded += 1
                break
            except WireError:
                continue
    assert decoded >= len(SEEDS) * 3 // 4
    for data in CONTENT_SEEDS:
        decode_content(data)
