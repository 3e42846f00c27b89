"""Message franking commitments (protocol.md §15).

The sender draws a fresh 32-byte franking key ``fk`` per message, commits::

    fc = HMAC-SHA256(fk, FRANKING_CONTEXT || sender_ik(32) || recipient_ik(32)
                          || len(message)(4, big-endian) || message
                          || n_attachments(1) || sha256(attachment_1) || ... )

and sends ``fc`` next to the ciphertext (the relay sees it; it will bind it to the delivery
context with a relay tag) and ``fk`` inside the ciphertext. The recipient recomputes ``fc`` from
what it decrypted and drops the message when it differs. A report later reveals
``(message, attachment hashes, fk, sender, recipient)`` and the relay's tag; HMAC-SHA256 is
committing for a key chosen by the sender (it is collision resistant in key and message
jointly), so a sender cannot open one ``fc`` to two different messages.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from clientlib.crypto.kdf import FRANKING_CONTEXT
from clientlib.crypto.primitives import HASH_SIZE, ct_eq, hmac_sha256
from clientlib.errors import DecryptionError

__all__ = [
    "FRANKING_COMMITMENT_SIZE",
    "FRANKING_KEY_SIZE",
    "MAX_ATTACHMENTS",
    "commitment_input",
    "franking_commit",
    "franking_verify",
]

FRANKING_KEY_SIZE: Final = 32
FRANKING_COMMITMENT_SIZE: Final = 32
#: Most attachments one message may reference. 16 hashes (512 bytes) still fit a 1 KiB
#: bucket with room for text; albums beyond that are split over messages by the client.
MAX_ATTACHMENTS: Final = 16


def commitment_input(
    sender: bytes, recipient: bytes, message: bytes, attachment_hashes: Sequence[bytes]
) -> bytes:
    """The exact bytes under the franking HMAC (§15.1).

    Raises:
        ValueError: more than ``MAX_ATTACHMENTS`` hashes, or a hash that is not 32 bytes.
    """
    if len(attachment_hashes) > MAX_ATTACHMENTS:
        raise ValueError("too many attachments")
    for h in attachment_hashes:
        if len(h) != HASH_SIZE:
            raise ValueError("an attachment hash is 32 bytes (SHA-256 of the plaintext)")
    return b"".join(
        (
            FRANKING_CONTEXT,
            sender,
            recipient,
            struct.pack(">I", len(message)),
            message,
            bytes((len(attachment_hashes),)),
            *attachment_hashes,
        )
    )


def franking_commit(
    franking_key: bytes,
    *,
    sender: bytes,
    recipient: bytes,
    message: bytes,
    attachment_hashes: Sequence[bytes] = (),
) -> bytes:
    """Compute the 32-byte commitment ``fc``.

    Raises:
        ValueError: bad key size or attachment list.
    """
    if len(franking_key) != FRANKING_KEY_SIZE:
        raise ValueError("a franking key is 32 bytes")
    return hmac_sha256(
        franking_key, commitment_input(sender, recipient, message, attachment_hashes)
    )


def franking_verify(
    commitment: bytes,
    franking_key: bytes,
    *,
    sender: bytes,
    recipient: bytes,
    message: bytes,
    attachment_hashes: Sequence[bytes] = (),
) -> None:
    """Check ``commitment`` in constant time.

    Raises:
        DecryptionError: the commitment does not open to this message.
    """
    try:
        expected = franking_commit(
            franking_key,
            sender=sender,
            recipient=recipient,
            message=message,
            attachment_hashes=attachment_hashes,
        )
    except ValueError:
        raise DecryptionError from None
    if len(commitment) != FRANKING_COMMITMENT_SIZE or not ct_eq(expected, commitment):
        raise DecryptionError
