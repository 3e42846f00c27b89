"""Shared pieces of the fuzz suite (``tests/fuzz/``; issue 19, item 12).

Two budgets: the default (CI) one is derandomized, so a run is reproducible and CI never
flakes on a new example, with enough examples per test to walk every decoder's branches
while the whole directory stays well under a minute; ``BLINDRELAY_FUZZ=long`` draws at
random, many times more (run it by hand: ``BLINDRELAY_FUZZ=long python3 -m pytest
tests/fuzz -q``). The budgets are applied per test with :func:`fuzz` (not as a global
Hypothesis profile, which would change the property tests' settings too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
LONG = os.environ.get("BLINDRELAY_FUZZ") == "long"

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(examples: int) -> Callable[[F], F]:
    """Settings for one fuzz test: ``examples`` in CI (derandomized), 25x at random when
    ``BLINDRELAY_FUZZ=long``."""
    return settings(
        max_examples=examples * 25 if LONG else examples,
        derandomize=not LONG,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def golden_frames() -> dict[str, bytes]:
    """Every structure of tests/unit/wire/golden_frames.json: the seeds of mutation."""
    data = json.loads((ROOT / "tests/unit/wire/golden_frames.json").read_text())
    return {name: bytes.fromhex(hexed) for name, hexed in data["bytes"].items()}


def client_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "tests/vectors/client-v1.json").read_text())
    return data["client-v1"]  # type: ignore[no-any-return]


def binary(*, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Bytes drawn as integers, not with ``st.binary``: Hypothesis caches examples by their
    choice sequence, and a ``b""`` choice where another example had ``0`` compares bytes with
    an int (equal hashes), which ``python -bb`` (the suite's flag) turns into an error."""
    return st.lists(st.integers(0, 255), min_size=min_size, max_size=max_size).map(bytes)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits: bytes flipped, set, inserted, deleted, a slice cut,
    repeated or truncated (the edits that reach a decoder's deeper checks)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 6))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xDC, 0xDE, 0xFF]))
        elif op == 2:
            data[pos:pos] = draw(binary(min_size=1, max_size=8))
        elif op == 3 and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == 4:
            data = data[:pos]
        elif op == 5 and data:
            end = min(len(data), pos + draw(st.integers(1, 16)))
            data[end:end] = data[pos:end]
        else:
            data += draw(binary(max_size=4))
    return bytes(data)


#: msgpack values a decoder may meet: every type, nested a little.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=12,
)
