"""The sans-IO session core (protocol.md §11-§15): handshake, Double Ratchet, sealed sender.

Bytes in, events out; no sockets, no clock, no randomness of its own (``now`` and ``rng`` are
parameters). Every decryption or authentication failure raises the one
:class:`~clientlib.errors.DecryptionError` and leaves the session unchanged.
"""

from __future__ import annotations

from clientlib.session.events import Event, MessageReceived, SealedEnvelope, SessionEstablished
from clientlib.session.handshake import PreKeyBundle, PreKeyHeader
from clientlib.session.ratchet import MAX_FORWARD_JUMP, MAX_SKIPPED_KEY_AGE, MAX_SKIPPED_KEYS
from clientlib.session.session import (
    MESSAGE_OVERHEAD,
    PREKEY_MESSAGE_OVERHEAD,
    Accepted,
    ModeratorKey,
    ModeratorKeys,
    OpenedEnvelope,
    Session,
    accept,
    initiate,
    max_plaintext_size,
    open_envelope,
)
from clientlib.session.state import SessionRecord

__all__ = [
    "MAX_FORWARD_JUMP",
    "MAX_SKIPPED_KEYS",
    "MAX_SKIPPED_KEY_AGE",
    "MESSAGE_OVERHEAD",
    "PREKEY_MESSAGE_OVERHEAD",
    "Accepted",
    "Event",
    "MessageReceived",
    "ModeratorKey",
    "ModeratorKeys",
    "OpenedEnvelope",
    "PreKeyBundle",
    "PreKeyHeader",
    "SealedEnvelope",
    "Session",
    "SessionEstablished",
    "SessionRecord",
    "accept",
    "initiate",
    "max_plaintext_size",
    "open_envelope",
]
