"""Every v1 structure's schema and bytes, pinned against a snapshot recorded before the frames
declared their fields with ``wire(...)`` (issue 10 item 5).

For every structure in the wire package, two instances are built from its schema: ``full``
(every optional field present) and ``min`` (every optional field absent). Their encodings must
equal the recorded bytes (key order, optional-field omission, integer widths: everything), and
decoding the recorded bytes must give the instance back. The schema itself (wire key, attribute,
type and bounds, required) is pinned too, entry by entry.

``golden_frames.json`` was recorded by running this file as a script
(``python3 tests/unit/wire/test_wire_golden.py --record``) on the explicit-``SCHEMA`` code. Do
not re-record it for a refactor; a deliberate wire change re-records it in the same commit as
protocol.md and the vectors.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from clientlib.wire import frames
from clientlib.wire.codec import (
    Bin,
    Field,
    Int,
    IntIn,
    ListOf,
    Str,
    Struct,
    StructField,
    Text,
    _Check,
    decode_map,
)

GOLDEN = Path(__file__).with_name("golden_frames.json")

CLIENT_FRAMES: tuple[type[Struct], ...] = (
    frames.RequestChallenge,
    frames.SignedOwnerCommand,
    frames.Deposit,
    frames.Recall,
    frames.Fanout,
    frames.Ack,
    frames.Unsubscribe,
    frames.FetchBundle,
    frames.GetBoundaries,
    frames.GetPow,
)
RELAY_FRAMES: tuple[type[Struct], ...] = (
    frames.Hello,
    frames.Ok,
    frames.ErrorReply,
    frames.ChallengeIssued,
    frames.MailboxCreated,
    frames.EnvelopeDelivered,
    frames.EnvelopesFetched,
    frames.Drained,
    frames.PreKeysStored,
    frames.BundleIssued,
    frames.BoundariesIssued,
    frames.PowIssued,
    frames.MailboxInfo,
    frames.ReportAccepted,
    frames.ReportStatus,
    frames.FanoutDone,
)
#: Structures that are not frames of their own (no ``t``), decoded with ``from_map``.
PARTS: tuple[type[Struct], ...] = (
    frames.Boundaries,
    frames.RelayLimits,
    frames.StoredEnvelope,
    frames.OwnerCommand,
    frames.FanoutRefusal,
)
ALL = CLIENT_FRAMES + RELAY_FRAMES + PARTS


def describe(check: _Check) -> Any:
    """A JSON description of a field type and its bounds."""
    if isinstance(check, Bin):
        return ["Bin", check.min, check.max]
    if isinstance(check, Int):
        return ["Int", check.min, check.max]
    if isinstance(check, IntIn):
        return ["IntIn", sorted(check.choices)]
    if isinstance(check, Str):
        return ["Str", sorted(check.choices)]
    if isinstance(check, Text):
        return ["Text", check.max_bytes]
    if isinstance(check, ListOf):
        return ["ListOf", describe(check.item), check.max_len]
    if isinstance(check, StructField):
        return ["StructField", check.cls.__name__]
    raise AssertionError(f"unknown field type {type(check).__name__}")


def describe_schema(cls: type[Struct]) -> list[Any]:
    return [[f.key, f.attr, f.required, describe(f.type)] for f in cls.SCHEMA]


def sample_value(check: _Check, salt: int) -> Any:
    """A deterministic valid value for ``check``; ``salt`` varies it between fields."""
    if isinstance(check, Bin):
        size = check.min if check.min == check.max else max(check.min, min(check.max, 3))
        return bytes((salt + i) % 256 for i in range(size))
    if isinstance(check, Int):
        # Exercise several msgpack integer widths: the top of the range, or min + salt.
        return check.max if salt % 2 else min(check.max, check.min + salt)
    if isinstance(check, (IntIn, Str)):
        choices = sorted(check.choices)  # type: ignore[type-var]
        return choices[salt % len(choices)]
    if isinstance(check, Text):
        return "note \u00fc"[: check.max_bytes]
    if isinstance(check, ListOf):
        return tuple(sample_value(check.item, salt + i) for i in range(min(2, check.max_len)))
    if isinstance(check, StructField):
        return build(check.cls, full=True, salt=salt)
    raise AssertionError(f"unknown field type {type(check).__name__}")


def build(cls: type[Struct], *, full: bool, salt: int = 0) -> Any:
    kwargs: dict[str, Any] = {}
    for i, f in enumerate(cls.SCHEMA):
        present = f.required or full
        kwargs[f.attr] = sample_value(f.type, salt + i) if present else None
    return cls(**kwargs)


def samples() -> dict[str, Any]:
    return {
        f"{cls.__name__}/{shape}": build(cls, full=shape == "full")
        for cls in ALL
        for shape in ("full", "min")
    }


def decode(cls: type[Struct], data: bytes) -> Any:
    if cls in CLIENT_FRAMES:
        return frames.decode_client_frame(data)[1]
    if cls in RELAY_FRAMES:
        return frames.decode_relay_frame(data)[1]
    return cls.from_map(decode_map(data, max_size=1 << 20)[1])


def record() -> dict[str, Any]:
    return {
        "schemas": {cls.__name__: describe_schema(cls) for cls in ALL},
        "bytes": {name: obj.encode().hex() for name, obj in samples().items()},
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def test_every_structure_is_pinned(golden: dict[str, Any]) -> None:
    assert sorted(golden["schemas"]) == sorted(cls.__name__ for cls in ALL)
    assert sorted(golden["bytes"]) == sorted(samples())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_schema_unchanged(cls: type[Struct], golden: dict[str, Any]) -> None:
    assert describe_schema(cls) == golden["schemas"][cls.__name__]


@pytest.mark.parametrize("name", sorted(samples()))
def test_bytes_unchanged(name: str, golden: dict[str, Any]) -> None:
    obj = samples()[name]
    expected = bytes.fromhex(golden["bytes"][name])
    assert obj.encode() == expected
    assert decode(type(obj), expected) == obj


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_schema_matches_dataclass(cls: type[Struct]) -> None:
    """Key, attribute and type cannot disagree: one schema entry per dataclass field, in order,
    optional on the wire exactly when the attribute may be ``None``."""
    assert [f.attr for f in cls.SCHEMA] == [f.name for f in dataclasses.fields(cls)]
    for entry, field in zip(cls.SCHEMA, dataclasses.fields(cls), strict=True):
        assert isinstance(entry, Field)
        assert entry.required == ("None" not in str(field.type)), entry.attr


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    GOLDEN.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
