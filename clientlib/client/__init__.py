"""The client library's application API: :class:`Client` and the values it hands out.

Everything an app needs::

    from clientlib.client import Client, ClientConfig, MessageReceived, RequestReceived

See :mod:`clientlib.client.client` for the delivery guarantees, :class:`ClientConfig` for the
settings, and protocol.md §21-§23 for invitations, contact requests, pairwise mailboxes and
catch-up. Modules whose names start with ``_`` are private.
"""

from __future__ import annotations

from clientlib.client._receipts import DEFAULT_RECEIPT_DELAY, ReceiptDelay
from clientlib.client._typing import TYPING_KEEPALIVE, TYPING_TIMEOUT
from clientlib.client.client import Client, ContactRef, RequestRef
from clientlib.client.config import ClientConfig
from clientlib.client.history import (
    CorruptHistory,
    EncryptedFileHistory,
    HistoryStore,
    MemoryHistory,
)
from clientlib.client.invite import IdentityMismatch, InvalidInvitation, Invitation
from clientlib.client.types import (
    CaughtUp,
    ClientEvent,
    ClientWarning,
    ConnectionChanged,
    Contact,
    ContactAdded,
    ContactRequest,
    DeliveryChanged,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    MessageReceived,
    PrivacySettings,
    ReportDetails,
    ReportResolved,
    RequestReceived,
    StoredMessage,
    TypingChanged,
)

__all__ = [
    "DEFAULT_RECEIPT_DELAY",
    "TYPING_KEEPALIVE",
    "TYPING_TIMEOUT",
    "CaughtUp",
    "Client",
    "ClientConfig",
    "ClientEvent",
    "ClientWarning",
    "ConnectionChanged",
    "Contact",
    "ContactAdded",
    "ContactRef",
    "ContactRequest",
    "CorruptHistory",
    "DeliveryChanged",
    "DisappearingChanged",
    "EncryptedFileHistory",
    "HistoryStore",
    "IdentityMismatch",
    "InvalidInvitation",
    "Invitation",
    "MemoryHistory",
    "MessageChanged",
    "MessageExpired",
    "MessageReceived",
    "PrivacySettings",
    "ReceiptDelay",
    "ReportDetails",
    "ReportResolved",
    "RequestReceived",
    "RequestRef",
    "StoredMessage",
    "TypingChanged",
]
