"""The client library's application API: :class:`Client` and the values it hands out.

Everything an app needs::

    from clientlib.client import Client, ClientConfig, MessageReceived, RequestReceived

See :mod:`clientlib.client.client` for the delivery guarantees, :class:`ClientConfig` for the
settings, and protocol.md §21-§23 for invitations, contact requests, pairwise mailboxes and
catch-up. Modules whose names start with ``_`` are private.
"""

from __future__ import annotations

from clientlib.client._linking import DeviceApproval, DeviceLinker
from clientlib.client._receipts import DEFAULT_RECEIPT_DELAY, ReceiptDelay
from clientlib.client._typing import TYPING_KEEPALIVE, TYPING_TIMEOUT
from clientlib.client.backup import BackupError, CorruptBackup, WrongRecoveryKey
from clientlib.client.client import Client, ContactRef, MediaRefused, RequestRef
from clientlib.client.config import ClientConfig
from clientlib.client.devicelist import MAX_DEVICES, InvalidDeviceList, LinkError
from clientlib.client.history import (
    CorruptHistory,
    EncryptedFileHistory,
    HistoryStore,
    MemoryHistory,
)
from clientlib.client.invite import IdentityMismatch, InvalidInvitation, Invitation
from clientlib.client.types import (
    Attachment,
    CaughtUp,
    ClientEvent,
    ClientWarning,
    ConnectionChanged,
    Contact,
    ContactAdded,
    ContactRequest,
    DeliveryChanged,
    Device,
    DeviceLinked,
    DeviceRemoved,
    DevicesChanged,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    MessageReceived,
    MessageSynced,
    PrivacySettings,
    ReportDetails,
    ReportResolved,
    RequestReceived,
    SessionRenewed,
    StoredMessage,
    TypingChanged,
)

__all__ = [
    "DEFAULT_RECEIPT_DELAY",
    "MAX_DEVICES",
    "TYPING_KEEPALIVE",
    "TYPING_TIMEOUT",
    "Attachment",
    "BackupError",
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
    "CorruptBackup",
    "CorruptHistory",
    "DeliveryChanged",
    "Device",
    "DeviceApproval",
    "DeviceLinked",
    "DeviceLinker",
    "DeviceRemoved",
    "DevicesChanged",
    "DisappearingChanged",
    "EncryptedFileHistory",
    "HistoryStore",
    "IdentityMismatch",
    "InvalidDeviceList",
    "InvalidInvitation",
    "Invitation",
    "LinkError",
    "MediaRefused",
    "MemoryHistory",
    "MessageChanged",
    "MessageExpired",
    "MessageReceived",
    "MessageSynced",
    "PrivacySettings",
    "ReceiptDelay",
    "ReportDetails",
    "ReportResolved",
    "RequestReceived",
    "RequestRef",
    "SessionRenewed",
    "StoredMessage",
    "TypingChanged",
    "WrongRecoveryKey",
]
