"""Strict msgpack codec for v1 structures (protocol.md §2.2).

Every structure on the wire is ``version_byte || msgpack(map)``. Decoding is strict, in this
order, before any work is done on the content:

1. the length is checked against the limit that applies;
2. byte 0 is checked against the supported versions (0x00 is reserved);
3. the rest must be exactly one msgpack map with string keys, no duplicate keys, no extension
   types, no trailing bytes, and containers no longer than the input could hold;
4. the map is checked against the structure's schema: every required field present, no unknown
   field, every value of the declared type and within its bounds.

A structure declares its schema once, on its attributes: ``@wire_struct`` makes the class a
frozen dataclass whose every attribute is a ``wire(...)`` field (its type and bounds, and its
wire key where that differs from the attribute name); an attribute annotated ``X | None`` is
optional on the wire. The older form, a ``@dataclass`` with an explicit ``SCHEMA`` tuple of
:class:`Field`, still works; both give the same ``SCHEMA`` and so the same bytes.

Any failure raises a :class:`~clientlib.errors.WireError` whose ``code`` is one documented
wire error code. Nesting is bounded by the schemas (the deepest v1 structure has depth 3);
anything nested where the schema expects a scalar is MALFORMED, and the C decoder refuses
nesting beyond 1024 before Python objects pile up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self, TypeVar, dataclass_transform, get_args

import msgpack

from clientlib.errors import FrameTooLarge, UnsupportedVersion, WireError
from clientlib.wire.version import SUPPORTED_VERSIONS, VersionRange

__all__ = [
    "Bin",
    "Field",
    "Int",
    "IntIn",
    "ListOf",
    "Str",
    "Struct",
    "StructField",
    "Text",
    "decode_map",
    "encode_map",
    "unpack_strict",
    "wire",
    "wire_struct",
]


class _Check:
    """A field type: validates a decoded value and returns it (possibly converted)."""

    __slots__ = ()

    def check(self, value: object) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> Any:
        return value


class Bin(_Check):
    """A msgpack ``bin`` of exactly ``size`` bytes, or of ``min..max`` bytes."""

    __slots__ = ("max", "min")

    def __init__(self, size: int | None = None, *, min: int = 0, max: int = 0) -> None:
        if size is not None:
            self.min = self.max = size
        else:
            self.min, self.max = min, max

    def check(self, value: object) -> bytes:
        if type(value) is not bytes or not self.min <= len(value) <= self.max:
            raise WireError("field must be bin of the specified length")
        return value


class Int(_Check):
    """A msgpack integer (never a bool or float) within ``min..max``."""

    __slots__ = ("max", "min")

    def __init__(self, min: int = 0, max: int = 2**64 - 1) -> None:
        self.min, self.max = min, max

    def check(self, value: object) -> int:
        if type(value) is not int or not self.min <= value <= self.max:
            raise WireError("field must be an integer within the specified range")
        return value


class IntIn(_Check):
    """A msgpack integer (never a bool or float) that must be one of ``choices``."""

    __slots__ = ("choices",)

    def __init__(self, choices: Sequence[int]) -> None:
        self.choices = frozenset(choices)

    def check(self, value: object) -> int:
        if type(value) is not int or value not in self.choices:
            raise WireError("field must be one of the specified integers")
        return value


class Str(_Check):
    """A msgpack ``str`` that must be one of ``choices``."""

    __slots__ = ("choices",)

    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = frozenset(choices)

    def check(self, value: object) -> str:
        if type(value) is not str or value not in self.choices:
            raise WireError("field must be one of the specified strings")
        return value


class Text(_Check):
    """A msgpack ``str`` of at most ``max_bytes`` bytes of UTF-8, without NUL characters."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def check(self, value: object) -> str:
        if type(value) is not str:
            raise WireError("field must be text")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates: never from the wire, maybe from callers
            raise WireError("text must be valid Unicode") from None
        if "\x00" in value or size > self.max_bytes:
            raise WireError("text too long or contains NUL")
        return value


class ListOf(_Check):
    """A msgpack array of at most ``max_len`` items, each checked by ``item``."""

    __slots__ = ("item", "max_len")

    def __init__(self, item: _Check, max_len: int) -> None:
        self.item, self.max_len = item, max_len

    def check(self, value: object) -> tuple[Any, ...]:
        if type(value) is not list or len(value) > self.max_len:
            raise WireError("field must be an array within the specified length")
        check = self.item.check
        return tuple(check(v) for v in value)

    def dump(self, value: Any) -> Any:
        dump = self.item.dump
        return [dump(v) for v in value]


class StructField(_Check):
    """A nested map decoded into a :class:`Struct` subclass."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Struct]) -> None:
        self.cls = cls

    def check(self, value: object) -> Struct:
        if type(value) is not dict:
            raise WireError("field must be a map")
        return self.cls.from_map(value)

    def dump(self, value: Any) -> Any:
        assert isinstance(value, Struct)
        return value.to_map()


@dataclass(frozen=True, slots=True)
class Field:
    """One schema entry: the wire key, the attribute name, its type, and whether required."""

    key: str
    attr: str
    type: _Check
    required: bool = True


class Struct:
    """Base of every v1 structure: a frozen dataclass with a ``SCHEMA`` of :class:`Field`.

    Declare the fields with :func:`wire_struct` and :func:`wire` (``SCHEMA`` is then derived
    from them), or, in the older form, with ``@dataclass`` and an explicit ``SCHEMA``.

    ``TYPE`` (when set) is the value of the ``t`` field that names the structure on the wire.
    Optional fields hold ``None`` when absent and are omitted when encoding.
    """

    __slots__ = ()
    TYPE: ClassVar[str] = ""
    SCHEMA: ClassVar[tuple[Field, ...]] = ()
    # Every concrete structure is a dataclass (declared here for the type checker only).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def from_map(cls, fields: Mapping[str, Any]) -> Self:
        """Validate a decoded map against ``SCHEMA`` and build the structure.

        Raises:
            WireError: a field is missing, unknown or of the wrong type.
        """
        plan = cls.__dict__.get("_PLAN", _UNPLANNED)
        if plan is _UNPLANNED:
            plan = cls._plan()
        expected = len(fields) - (1 if cls.TYPE else 0)
        seen = 0
        if plan is None:  # a __post_init__ to run: through the constructor
            kwargs: dict[str, Any] = {}
            for f in cls.SCHEMA:
                if f.key in fields:
                    kwargs[f.attr] = f.type.check(fields[f.key])
                    seen += 1
                elif f.required:
                    raise WireError("a required field is missing")
                else:
                    kwargs[f.attr] = None
            if seen != expected:
                raise WireError("unknown field")
            return cls(**kwargs)
        # The same checks in the same order, filling the (frozen) instance directly: the
        # dataclass constructor's keyword arguments and per-field setattr calls are the
        # larger part of decoding a small frame.
        obj = object.__new__(cls)
        get = fields.get
        for key, attr, check, required in plan:
            value = get(key, _ABSENT)
            if value is _ABSENT:
                if required:
                    raise WireError("a required field is missing")
                _setattr(obj, attr, None)
            else:
                _setattr(obj, attr, check(value))
                seen += 1
        if seen != expected:
            raise WireError("unknown field")
        return obj

    @classmethod
    def _plan(cls) -> tuple[tuple[str, str, Callable[[object], Any], bool], ...] | None:
        """How :meth:`from_map` fills this structure (computed once per class): one ``(key,
        attribute, check, required)`` per schema field, or None when a ``__post_init__``
        must run."""
        plan = None
        if not hasattr(cls, "__post_init__"):
            plan = tuple((f.key, f.attr, f.type.check, f.required) for f in cls.SCHEMA)
        type.__setattr__(cls, "_PLAN", plan)
        return plan

    def to_map(self) -> dict[str, Any]:
        cls = type(self)
        plan = cls.__dict__.get("_DUMP_PLAN")
        if plan is None:
            # (key, attribute, dump or None where the value is written as it is), once.
            plan = tuple(
                (f.key, f.attr, None if type(f.type).dump is _Check.dump else f.type.dump)
                for f in cls.SCHEMA
            )
            type.__setattr__(cls, "_DUMP_PLAN", plan)
        out: dict[str, Any] = {"t": self.TYPE} if self.TYPE else {}
        for key, attr, dump in plan:
            value = getattr(self, attr)
            if value is not None:
                out[key] = value if dump is None else dump(value)
        return out

    def encode(self, version: int = SUPPORTED_VERSIONS.max) -> bytes:
        """Encode as ``version || msgpack(map)``."""
        return encode_map(self.to_map(), version)


_ABSENT: Final = object()
_UNPLANNED: Final = object()
_setattr = object.__setattr__  # what a frozen dataclass's own __init__ uses

#: The key of a :func:`wire` field's entry in its dataclass field metadata.
_WIRE = "clientlib.wire"
_S = TypeVar("_S", bound=Struct)


@dataclass(frozen=True, slots=True)
class _WireSpec:
    check: _Check
    key: str | None


def wire(check: _Check, /, *, key: str | None = None, default: object = dataclasses.MISSING) -> Any:
    """Declare one field of a :func:`wire_struct` structure.

    Args:
        check: the field's type and bounds (``Bin(32)``, ``Int(0, 1)``, ``ListOf(...)``, ...).
        key: the wire key, only where it differs from the attribute name.
        default: ``None`` to let callers leave an optional field out; nothing else.

    The field is optional on the wire (absent when ``None``, omitted when encoding) exactly
    when its annotation admits ``None``.

    Raises:
        TypeError: ``default`` is neither ``None`` nor left out.
    """
    metadata = {_WIRE: _WireSpec(check, key)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if default is not None:
        raise TypeError("a wire field's default can only be None")
    return dataclasses.field(default=None, metadata=metadata)


def _admits_none(annotation: object) -> bool:
    """Whether a field annotation admits ``None``: ``X | None`` or ``Optional[X]``, as a type
    or as the string a ``from __future__ import annotations`` module leaves."""
    if annotation is None or annotation is type(None):
        return True
    if not isinstance(annotation, str):
        return type(None) in get_args(annotation)
    text = annotation.replace(" ", "")
    if text.startswith(("Optional[", "typing.Optional[")):
        return True
    depth, part, parts = 0, "", []
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "|" and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    return "None" in parts


@dataclass_transform(frozen_default=True, field_specifiers=(wire,))
def wire_struct(cls: type[_S]) -> type[_S]:
    """Make ``cls`` a frozen, slotted dataclass and derive its ``SCHEMA`` from its fields.

    Every field must be declared with :func:`wire`; the schema lists them in declaration order
    (which is the key order on the wire), keyed by the attribute name unless ``key`` says
    otherwise, required unless the annotation admits ``None``.

    Raises:
        TypeError: a field is not a :func:`wire` field, a ``None`` default is given to a field
            that cannot be ``None``, two fields share a wire key, a field uses the key ``t``
            while the structure has a ``TYPE``, or the class also sets ``SCHEMA``.
    """
    if "SCHEMA" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: declare wire(...) fields or a SCHEMA, not both")
    made = dataclass(frozen=True, slots=True)(cls)
    schema: list[Field] = []
    for f in dataclasses.fields(made):
        spec = f.metadata.get(_WIRE)
        if not isinstance(spec, _WireSpec):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with wire(...)")
        optional = _admits_none(f.type)
        if f.default is None and not optional:
            raise TypeError(f"{cls.__name__}.{f.name} defaults to None but cannot be None")
        schema.append(Field(spec.key or f.name, f.name, spec.check, required=not optional))
    keys = [f.key for f in schema]
    if len(set(keys)) != len(keys) or (made.TYPE and "t" in keys):
        raise TypeError(f"{cls.__name__}: wire keys must be unique (and not t)")
    made.SCHEMA = tuple(schema)
    return made


def encode_map(fields: Mapping[str, Any], version: int) -> bytes:
    """Encode ``fields`` as ``version || msgpack(fields)``."""
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return bytes((version,)) + packed


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise WireError("duplicate key in map")
    return result


def _reject_ext(code: int, data: bytes) -> Any:
    raise WireError("extension types are not allowed")


def unpack_strict(data: bytes | memoryview) -> Any:
    """Decode exactly one msgpack value strictly (steps 3-4 of the module docstring).

    Maps may have str or bin keys (callers check which), never duplicates; no extension
    types; no trailing bytes; no container or string longer than the input could hold.

    Raises:
        WireError: the input is not exactly one such value.
    """
    n = len(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            object_pairs_hook=_pairs_to_dict,
            ext_hook=_reject_ext,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=0,
        )
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.StackError, msgpack.FormatError):
        # ExtraData (trailing bytes), bad UTF-8, truncation and bad markers all land here.
        raise WireError("input is not a single well-formed msgpack value") from None


def decode_map(
    data: bytes,
    *,
    max_size: int,
    versions: VersionRange = SUPPORTED_VERSIONS,
) -> tuple[int, dict[str, Any]]:
    """Decode ``version || msgpack(map)`` strictly (see the module docstring).

    Args:
        data: the exact bytes received.
        max_size: the largest acceptable ``len(data)``.
        versions: the acceptable range for byte 0.

    Returns:
        ``(version, map)``; the map has str keys only and may hold nested maps and lists.

    Raises:
        FrameTooLarge: ``len(data) > max_size``.
        UnsupportedVersion: byte 0 is 0 or outside ``versions``.
        WireError: anything else that is not a single well-formed msgpack map.
    """
    n = len(data)
    if n > max_size:
        raise FrameTooLarge("input exceeds the size limit")
    if n < 2:
        raise WireError("input too short")
    version = data[0]
    if version not in versions:
        raise UnsupportedVersion(version, versions.as_tuple())
    obj = unpack_strict(memoryview(data)[1:])
    if type(obj) is not dict:
        raise WireError("top-level value must be a map")
    for key in obj:
        if type(key) is not str:
            raise WireError("map keys must be strings")
    return version, obj
