"""Session offers (protocol.md §24.4): a signed prekey bundle sent to a known contact, so
that the contact starts a new session with us when we hold no session any more (a keystore
restored from a backup, §24.3) or with a device of ours it has no session with yet.

Layout (inner type ``0x03`` of the sealed layer, §13)::

    inner = 0x01 | 0x03 | pad(ts(8, BE) | u16be(len(ext)) | ext | bundle)
                                                   bundle: §11.1, no OPK record
    ct    = seal(inner)                                      (a 2,048-byte envelope)

The sealed layer authenticates the sender's identity key; the bundle's prekeys are signed by
that same key, which the recipient MUST check against the identity it already holds for the
contact. ``ts`` (the sender's clock, seconds) orders offers: a recipient accepts an offer only
if its ``ts`` is above the last one it accepted from that contact, so a replayed offer changes
nothing. The recipient answers with an ordinary prekey message (§11) built on the bundle.
``ext`` is opaque here: empty for a restore (§24.4), a device part for a new device (§24.6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey
from clientlib.crypto.padding import pad, unpad
from clientlib.crypto.primitives import ct_eq
from clientlib.errors import DecryptionError, KeyValidationError
from clientlib.session.handshake import PreKeyBundle
from clientlib.session.sealed import SEALED_OVERHEAD, seal, unseal
from clientlib.wire.limits import ENVELOPE_BUCKETS

__all__ = ["TYPE_OFFER", "SessionOffer", "open_offer", "seal_offer"]

TYPE_OFFER: Final = 0x03
_INNER_VERSION: Final = 0x01


@dataclass(frozen=True, slots=True)
class SessionOffer:
    """A verified offer: ``bundle`` is signed by ``sender`` (the sealed layer's identity)."""

    sender: IdentityPublicKey
    ts: int
    bundle: PreKeyBundle
    ext: bytes = b""


def seal_offer(
    identity: IdentityKeyPair,
    recipient: IdentityPublicKey,
    bundle: PreKeyBundle,
    *,
    ts: int,
    rng: RNG,
    ext: bytes = b"",
) -> bytes:
    """The envelope ciphertext of an offer of ``bundle`` (ours) to ``recipient``."""
    if bundle.identity != identity.public or bundle.one_time_prekey is not None:
        raise ValueError("an offer carries our own bundle without a one-time prekey")
    if len(ext) > 0xFFFF:
        raise ValueError("offer extension too long")
    body = struct.pack(">QH", ts, len(ext)) + ext + bundle.to_bytes()
    inner = bytes((_INNER_VERSION, TYPE_OFFER)) + pad(
        body, overhead=SEALED_OVERHEAD + 2, buckets=ENVELOPE_BUCKETS
    )
    return seal(
        inner,
        sender=identity.public,
        dh_s=identity.dh(recipient.x25519),
        recipient=recipient,
        rng=rng,
    )


def open_offer(
    identity: IdentityKeyPair, ct: bytes, *, expected: IdentityPublicKey
) -> SessionOffer:
    """Open an offer sent to ``identity`` by ``expected`` (the contact's known identity).

    Raises:
        DecryptionError: not an offer, not from ``expected``, or a bundle that does not verify
            (one error for every case: the caller drops the envelope).
    """
    if len(ct) not in ENVELOPE_BUCKETS:
        raise DecryptionError
    sender, inner = unseal(ct, recipient=identity)
    if len(inner) < 2 or inner[0] != _INNER_VERSION or inner[1] != TYPE_OFFER:
        raise DecryptionError
    if not ct_eq(bytes(sender), bytes(expected)):
        raise DecryptionError
    body = unpad(inner[2:])
    if len(body) < 10:
        raise DecryptionError
    ts, n = struct.unpack(">QH", body[:10])
    if len(body) < 10 + n:
        raise DecryptionError
    ext = body[10 : 10 + n]
    try:
        bundle = PreKeyBundle.parse(body[10 + n :])
    except KeyValidationError:
        raise DecryptionError from None
    if bundle.identity != sender or bundle.one_time_prekey is not None:
        raise DecryptionError
    return SessionOffer(sender, ts, bundle, ext)
