"""What the application layer sees of a relay transport: events and mailbox credentials.

Nothing in here touches the network or any key material: an owner's secret key stays with
the caller, who hands the transport a ``sign`` callback instead (protocol.md §4.2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from clientlib.wire import StoredEnvelope

__all__ = [
    "CaughtUp",
    "Delivered",
    "Disconnected",
    "MailboxCredential",
    "Reconnected",
    "SignFn",
    "SubscriptionLost",
    "TransportEvent",
]

#: Signs an encoded owner command: takes the exact ``cmd`` bytes and returns the 64-byte
#: Ed25519 signature over ``OWNER_COMMAND_CONTEXT || cmd`` (protocol.md §4.2).
SignFn = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class MailboxCredential:
    """What a transport needs to act as the owner of one mailbox.

    Attributes:
        rid: the mailbox's receive id (known only to its owner).
        sign: signs owner commands with the mailbox's owner key (see :data:`SignFn`).
    """

    rid: bytes = field(repr=False)
    sign: SignFn = field(repr=False)

    def __repr__(self) -> str:
        return "MailboxCredential(<redacted>)"


@dataclass(frozen=True, slots=True)
class Delivered:
    """An envelope pushed for mailbox ``rid``; ack ``env.seq`` once it is processed.

    Delivery is at-least-once: the same ``env.eid`` may arrive again after a reconnect.
    Online-only envelopes have ``env.seq == 0`` and need no ack.
    """

    rid: bytes = field(repr=False)
    env: StoredEnvelope = field(repr=False)


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Everything stored for ``rid`` when the (re)subscription began has been delivered."""

    rid: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket dropped; the transport is reconnecting (or gave up if ``final``)."""

    final: bool = False


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A new socket is up; every subscription is being renewed (expect redeliveries)."""


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """Renewing the subscription of ``rid`` after a reconnect was rejected with ``code``.

    ``AUTH`` means the mailbox no longer exists (deleted, or expired after idling).
    """

    rid: bytes = field(repr=False)
    code: str


TransportEvent = Delivered | CaughtUp | Disconnected | Reconnected | SubscriptionLost
