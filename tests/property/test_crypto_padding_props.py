"""Padding lands on a bucket at every boundary, and unpad inverts pad (protocol.md §14)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.crypto.padding import PAD_HEADER_SIZE, max_content_size, pad, unpad
from clientlib.errors import DecryptionError, LocalProtocolError
from clientlib.session import MESSAGE_OVERHEAD, PREKEY_MESSAGE_OVERHEAD
from clientlib.wire.limits import ENVELOPE_BUCKETS

OVERHEADS = st.one_of(
    st.sampled_from([MESSAGE_OVERHEAD, PREKEY_MESSAGE_OVERHEAD, 0]), st.integers(0, 2000)
)


@given(
    bucket=st.sampled_from(ENVELOPE_BUCKETS),
    delta=st.integers(-3, 3),
    overhead=OVERHEADS,
    fill=st.integers(0, 255),
)
def test_pad_unpad_on_every_bucket_boundary(
    bucket: int, delta: int, overhead: int, fill: int
) -> None:
    n = bucket - overhead - PAD_HEADER_SIZE + delta
    if n < 0:
        return
    data = bytes([fill]) * n
    if n > max_content_size(overhead, ENVELOPE_BUCKETS):
        with pytest.raises(LocalProtocolError):
            pad(data, overhead=overhead, buckets=ENVELOPE_BUCKETS)
        return
    padded = pad(data, overhead=overhead, buckets=ENVELOPE_BUCKETS)
    total = overhead + len(padded)
    assert total in ENVELOPE_BUCKETS
    # The smallest bucket that fits: the next smaller one would not.
    smaller = [b for b in ENVELOPE_BUCKETS if b < total]
    assert not smaller or overhead + PAD_HEADER_SIZE + n > smaller[-1]
    assert total == (bucket if delta <= 0 else ENVELOPE_BUCKETS[ENVELOPE_BUCKETS.index(bucket) + 1])
    assert unpad(padded) == data


@given(st.binary(max_size=600))
def test_unpad_fails_only_with_decryption_error(blob: bytes) -> None:
    try:
        out = unpad(blob)
    except DecryptionError:
        return
    assert blob[:PAD_HEADER_SIZE] == len(out).to_bytes(4, "big")
    assert blob[PAD_HEADER_SIZE : PAD_HEADER_SIZE + len(out)] == out
    assert blob[PAD_HEADER_SIZE + len(out) :] == bytes(len(blob) - PAD_HEADER_SIZE - len(out))
