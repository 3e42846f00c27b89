"""Length hiding by size buckets (protocol.md §14).

The envelope handed to the relay must be exactly one bucket long (``ENVELOPE_BUCKETS`` in
:mod:`clientlib.wire.limits`). The session layer knows the fixed overhead ``o`` of every layer
wrapped around the padded plaintext, and asks :func:`pad` to pad the innermost plaintext so
that ``o + len(padded)`` is the smallest bucket that fits.

Padded layout::

    length(4, big-endian) | data | 0x00 * k

The bucket list is a parameter (the session passes the wire's list) so that this module stays
free of wire imports.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from clientlib.crypto.primitives import ct_eq
from clientlib.errors import DecryptionError, LocalProtocolError

__all__ = ["PAD_HEADER_SIZE", "max_content_size", "pad", "padded_size", "unpad"]

#: The big-endian u32 length prefix.
PAD_HEADER_SIZE: Final = 4


def padded_size(length: int, overhead: int, buckets: Sequence[int]) -> int:
    """The padded size of ``length`` data bytes under ``overhead`` bytes of outer layers.

    Raises:
        LocalProtocolError: the data does not fit in the largest bucket.
    """
    need = overhead + PAD_HEADER_SIZE + length
    for bucket in buckets:
        if need <= bucket:
            return bucket - overhead
    raise LocalProtocolError("message too large for the largest envelope bucket")


def max_content_size(overhead: int, buckets: Sequence[int]) -> int:
    """The largest data length that :func:`pad` accepts for ``overhead``."""
    return buckets[-1] - overhead - PAD_HEADER_SIZE


def pad(data: bytes, *, overhead: int, buckets: Sequence[int]) -> bytes:
    """Pad ``data`` so that ``overhead + len(result)`` is the smallest bucket that fits.

    Raises:
        LocalProtocolError: the data does not fit in the largest bucket.
    """
    size = padded_size(len(data), overhead, buckets)
    return struct.pack(">I", len(data)) + data + bytes(size - PAD_HEADER_SIZE - len(data))


def unpad(padded: bytes) -> bytes:
    """Strip the padding of :func:`pad`.

    Every deviation (short input, a length beyond the input, a non-zero padding byte) raises
    the one decryption error: the bytes were authenticated, so a mismatch means a sender that
    does not follow protocol.md §14.

    Raises:
        DecryptionError: malformed padding.
    """
    if len(padded) < PAD_HEADER_SIZE:
        raise DecryptionError
    (length,) = struct.unpack(">I", padded[:PAD_HEADER_SIZE])
    end = PAD_HEADER_SIZE + length
    if end > len(padded):
        raise DecryptionError
    tail = padded[end:]
    if not ct_eq(tail, bytes(len(tail))):
        raise DecryptionError
    return padded[PAD_HEADER_SIZE:end]
