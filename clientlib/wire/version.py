"""Protocol versions and their negotiation (protocol.md §2.3)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "VersionRange", "negotiate"]

#: The newest wire version this code speaks. Version 0x00 is reserved and always rejected.
PROTOCOL_VERSION = 1


@dataclass(frozen=True, slots=True)
class VersionRange:
    """An inclusive range of protocol versions ``min..max``."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max <= 255:
            raise ValueError("a version range needs 1 <= min <= max <= 255")

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.min <= version <= self.max

    def as_tuple(self) -> tuple[int, int]:
        return (self.min, self.max)


SUPPORTED_VERSIONS = VersionRange(1, PROTOCOL_VERSION)


def negotiate(ours: VersionRange, theirs: VersionRange) -> int | None:
    """Return the highest version in both ranges, or None when they do not overlap."""
    high = min(ours.max, theirs.max)
    low = max(ours.min, theirs.min)
    return high if high >= low else None
