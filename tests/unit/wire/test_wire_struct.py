"""Schemas declared once: ``@wire_struct`` and ``wire(...)`` next to the explicit-``SCHEMA`` form."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import pytest

from clientlib.errors import WireError
from clientlib.wire.codec import (
    Bin,
    Field,
    Int,
    ListOf,
    Struct,
    StructField,
    _admits_none,
    decode_map,
    wire,
    wire_struct,
)


@wire_struct
class Inner(Struct):
    n: int = wire(Int(0, 9))


@wire_struct
class Declared(Struct):
    TYPE: ClassVar[str] = "x"
    id: int = wire(Int(0, 100))
    payload: bytes = wire(Bin(min=1, max=4), key="p")
    maybe: int | None = wire(Int(0, 5))
    items: tuple[int, ...] | None = wire(ListOf(Int(0, 3), 2), default=None)
    inner: Inner | None = wire(StructField(Inner), key="in", default=None)


@dataclasses.dataclass(frozen=True, slots=True)
class Explicit(Struct):
    TYPE: ClassVar[str] = "x"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", Int(0, 100)),
        Field("p", "payload", Bin(min=1, max=4)),
        Field("maybe", "maybe", Int(0, 5), required=False),
        Field("items", "items", ListOf(Int(0, 3), 2), required=False),
        Field("in", "inner", StructField(Inner), required=False),
    )
    id: int
    payload: bytes
    maybe: int | None
    items: tuple[int, ...] | None = None
    inner: Inner | None = None


def test_schema_is_derived_from_the_fields() -> None:
    assert [(f.key, f.attr, f.required) for f in Declared.SCHEMA] == [
        ("id", "id", True),
        ("p", "payload", True),
        ("maybe", "maybe", False),
        ("items", "items", False),
        ("in", "inner", False),
    ]
    assert [f.key for f in Inner.SCHEMA] == ["n"]


def test_declared_struct_is_a_frozen_slotted_dataclass() -> None:
    obj = Declared(id=1, payload=b"ab", maybe=None)
    assert dataclasses.is_dataclass(obj) and not hasattr(obj, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.id = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Declared(id=1, payload=b"ab")  # type: ignore[call-arg]  # maybe has no default


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": 1, "payload": b"ab", "maybe": None},
        {"id": 100, "payload": b"abcd", "maybe": 5, "items": (0, 3), "inner": {"n": 9}},
    ],
)
def test_both_forms_give_the_same_bytes(kwargs: dict[str, object]) -> None:
    inner = kwargs.pop("inner", None)
    if isinstance(inner, dict):
        kwargs["inner"] = Inner(n=inner["n"])
    new, old = Declared(**kwargs), Explicit(**kwargs)  # type: ignore[arg-type]
    assert new.encode() == old.encode()
    assert Declared.from_map(decode_map(old.encode(), max_size=1000)[1]) == new
    assert Explicit.from_map(decode_map(new.encode(), max_size=1000)[1]) == old


def test_optional_fields_are_omitted_and_checked() -> None:
    fields = decode_map(Declared(id=1, payload=b"a", maybe=None).encode(), max_size=100)[1]
    assert fields == {"t": "x", "id": 1, "p": b"a"}
    with pytest.raises(WireError):
        Declared.from_map({"t": "x", "id": 1})  # p is required
    with pytest.raises(WireError):
        Declared.from_map({"t": "x", "id": 1, "payload": b"a"})  # the wire key is p
    with pytest.raises(WireError):
        Declared.from_map({"t": "x", "id": 1, "p": b"a", "maybe": 6})  # out of bounds


def test_mistakes_are_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="not declared with wire"):

        @wire_struct
        class Plain(Struct):
            a: int

    with pytest.raises(TypeError, match="cannot be None"):

        @wire_struct
        class NoneForInt(Struct):
            a: int = wire(Int(), default=None)

    with pytest.raises(TypeError, match="default can only be None"):
        wire(Int(), default=3)
    with pytest.raises(TypeError, match="unique"):

        @wire_struct
        class SameKey(Struct):
            a: int = wire(Int())
            b: int = wire(Int(), key="a")

    with pytest.raises(TypeError, match="unique"):

        @wire_struct
        class KeyT(Struct):
            TYPE: ClassVar[str] = "k"
            a: int = wire(Int(), key="t")

    with pytest.raises(TypeError, match="not both"):

        @wire_struct
        class Both(Struct):
            SCHEMA: ClassVar[tuple[Field, ...]] = (Field("a", "a", Int()),)
            a: int = wire(Int())


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("int", False),
        ("int | None", True),
        ("None | bytes", True),
        ("Optional[int]", True),
        ("tuple[bytes, ...] | None", True),
        ("tuple[int | None, ...]", False),
        ("dict[str, int | None]", False),
        ("NoneType", False),
        (int, False),
        (int | None, True),
        (Optional[int], True),  # noqa: UP045 -- the spelling under test
        (tuple[int | None, ...], False),
        (None, True),
    ],
)
def test_admits_none(annotation: object, expected: bool) -> None:
    assert _admits_none(annotation) is expected
