"""Events the session core returns (protocol.md §12-§15).

Small immutable values, named for what happened. Events that carry plaintext or a franking key
hide them from ``repr``/``str``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clientlib.crypto.keys import IdentityPublicKey
from clientlib.crypto.prekeys import PreKeyKind

__all__ = ["Event", "MessageReceived", "SealedEnvelope", "SessionEstablished"]


class Event:
    """Base of every session event. Don't subclass outside this module."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False)
class MessageReceived(Event):
    """A message decrypted, authenticated and franking-verified.

    Attributes:
        sender: the identity key that authenticated the message (sealed sender and session).
        plaintext: the message bytes.
        attachment_hashes: SHA-256 of each attachment's plaintext (under the commitment).
        franking_key: the per-message franking key (kept for a later abuse report).
        franking_commitment: ``fc`` as delivered by the relay (verified).
        relay_tag: the relay's opaque tag binding ``fc`` to delivery context, if the relay sent
            one (reserved for C4 reports; not interpreted here).
        akid: the relay key id the sender franked under (body version 2), else None.
        amf_signature: the verified 448-byte AMF signature ``sigma`` (§15.5), kept with the
            franking key for a report; None for a legacy body-1 message, which is not
            reportable.
    """

    sender: IdentityPublicKey
    plaintext: bytes
    attachment_hashes: tuple[bytes, ...]
    franking_key: bytes
    franking_commitment: bytes
    relay_tag: bytes | None = None
    akid: int | None = None
    amf_signature: bytes | None = None

    @property
    def reportable(self) -> bool:
        """True when the message carries a verified AMF signature (a report would verify)."""
        return self.amf_signature is not None

    def __repr__(self) -> str:
        return (
            f"MessageReceived(sender={self.sender!r}, plaintext=<{len(self.plaintext)} bytes>, "
            f"attachments={len(self.attachment_hashes)})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class SessionEstablished(Event):
    """The responder created a session from a prekey message.

    Attributes:
        remote_identity: the initiator's identity key.
        handshake_hash: the transcript hash ``th`` (public; identifies the handshake).
        consumed_prekeys: ``(kind, key_id)`` of every one-time prekey the keystore must now
            delete.
        used_last_resort: True when the initiator found no one-time ML-KEM key (replenish).
    """

    remote_identity: IdentityPublicKey
    handshake_hash: bytes
    consumed_prekeys: tuple[tuple[PreKeyKind, int], ...] = field(default=())
    used_last_resort: bool = False


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """What the client hands to the relay: ``ct`` (exactly one bucket long) and ``fc``.

    These map one to one onto ``clientlib.wire.Deposit.ct`` and ``Deposit.fc``.
    """

    ct: bytes
    fc: bytes

    def __repr__(self) -> str:
        return f"SealedEnvelope(ct=<{len(self.ct)} bytes>, fc={self.fc[:8].hex()}...)"
