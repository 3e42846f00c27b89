"""The values a :class:`~clientlib.client.Client` hands to applications: contacts, requests,
stored messages, and the events of :meth:`Client.events`.

All are small frozen value types. Ids are lowercase hex strings (16 random bytes), stable for
the lifetime of the keystore. Message text is hidden from ``repr`` so that an application
that logs events does not log conversations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Attachment",
    "CaughtUp",
    "ClientEvent",
    "ClientWarning",
    "ConnectionChanged",
    "Contact",
    "ContactAdded",
    "ContactRequest",
    "ContactState",
    "DeliveryChanged",
    "DeliveryState",
    "Device",
    "DeviceLinked",
    "DeviceRemoved",
    "DevicesChanged",
    "Direction",
    "DisappearingChanged",
    "MessageChanged",
    "MessageExpired",
    "MessageReceived",
    "MessageSynced",
    "PrivacySettings",
    "ReportDetails",
    "ReportResolved",
    "RequestReceived",
    "SessionRenewed",
    "StoredMessage",
    "TypingChanged",
    "WarningKind",
]

#: ``pending``: we sent a request and wait for the answer; ``accepted``: both sides agreed.
ContactState = Literal["pending", "accepted"]
Direction = Literal["in", "out"]
#: ``queued``: stored locally, not yet accepted by the relay; ``sent``: the relay stored it;
#: ``received``: an incoming message, stored locally; ``failed``: the relay refused it for
#: good (the contact's mailbox is gone); ``delivered``/``read``: the contact's client sent a
#: delivery or read receipt for it (protocol.md §22.11). An outgoing message only moves
#: forward: queued < sent < delivered < read.
DeliveryState = Literal["queued", "sent", "received", "failed", "delivered", "read"]
WarningKind = Literal[
    "prekeys_low",
    "prekeys_exhausted",
    "undecryptable",
    "malformed_content",
    "mailbox_lost",
    "duplicate_request",
    "storage_failed",
    "request_refused",
    "content_refused",
    "unreportable",
    "forged_reference",
    "group_dropped",
]


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """Per-conversation privacy settings (protocol.md §22.6).

    Attributes:
        receipts: send (and ask for) read receipts. Reciprocal: read receipts flow only
            while both sides have it on (protocol.md §22.11).
        typing: send (and show) typing indicators; reciprocal like ``receipts``.
        media: accept media (attachments) from the contact; when False only text is accepted
            and the contact's client does not offer to send media.
        delivery_receipts: send (and ask for) delivery receipts; reciprocal.
    """

    receipts: bool = True
    typing: bool = True
    media: bool = True
    delivery_receipts: bool = True


@dataclass(frozen=True, slots=True)
class Contact:
    """Someone we have a pairwise session with (or asked for one).

    Attributes:
        id: our local id for the contact.
        name: the display name they sent, or the one we set (never verified by anyone).
        state: ``pending`` until the other side accepts our request.
        verified: the user compared safety numbers (:meth:`Client.mark_verified`).
        safety_number: 60 digits to compare out of band (protocol.md §16).
        created_at: when the contact was created (our clock, seconds).
        blocked: we revoked the contact's send capability (:meth:`Client.block`).
        settings: our privacy settings for this conversation (sent to the contact).
        peer_settings: the contact's, once received.
        disappearing: the conversation's disappearing-message timer in seconds (0: off),
            set by either side (:meth:`Client.set_disappearing`).
    """

    id: str
    name: str
    state: ContactState
    verified: bool
    safety_number: str = field(repr=False)
    created_at: int
    blocked: bool = False
    settings: PrivacySettings = PrivacySettings()
    peer_settings: PrivacySettings | None = None
    disappearing: int = 0


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """An incoming contact request waiting for :meth:`Client.accept_request` or
    :meth:`Client.decline_request`. Nothing from the requester reaches a conversation before
    it is accepted.

    Attributes:
        id: our local id for the request.
        name: the display name the requester chose (unverified).
        intro: the introduction they wrote (unverified content).
        safety_number: what the conversation's safety number will be if accepted.
        received_at: when it arrived (our clock, seconds).
    """

    id: str
    name: str | None
    intro: str | None = field(repr=False)
    safety_number: str = field(repr=False)
    received_at: int


@dataclass(frozen=True, slots=True)
class Attachment:
    """The file a message carries (protocol.md §25.3), as the history keeps it: what to
    show, and (hidden from ``repr``) what :meth:`Client.download` needs.

    Attributes:
        contact_id: the conversation.
        message_id: the message (hex); :attr:`id` is its short form for display.
        name: the file name the sender gave (no directory part; may be None). Never a path:
            :meth:`Client.download` keeps only a safe last component and never overwrites.
        mime: the media type the sender announced (unverified).
        size: plaintext bytes.
        thumbnail: a small JPEG, blurred while the contact's safety number is not verified
            (:meth:`Client.thumbnail` gives the current form); None if there is none.
        view_once: the file may be opened once; after :meth:`Client.download` the message
            keeps only its name, type and size (``viewed``).
        viewed: a view-once file was opened: nothing is left to download.
        downloadable: the descriptor (key, read token, digest) is held.
    """

    contact_id: str
    message_id: str
    name: str | None
    mime: str
    size: int
    thumbnail: bytes | None = field(default=None, repr=False)
    view_once: bool = False
    viewed: bool = False
    descriptor: bytes = field(default=b"", repr=False, compare=False)
    plaintext_hash: bytes = field(default=b"", repr=False, compare=False)
    #: A file of a group message (protocol.md §26.5): the group's id; ``contact_id`` is "".
    group_id: str = ""

    @property
    def id(self) -> str:
        """The short id shown to users (the first four hex digits of the message id)."""
        return self.message_id[:4]

    @property
    def downloadable(self) -> bool:
        return bool(self.descriptor) and not self.viewed


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message of a conversation, as the history store keeps it.

    Attributes:
        contact_id: the conversation.
        id: the message id (chosen by the sender; unique per conversation and direction).
        direction: ``in`` (received) or ``out`` (sent by us).
        text: the message text.
        sent_at: the sender's clock (seconds); informational only.
        received_at: our clock when we stored it (in) or queued it (out).
        state: delivery state (see :data:`DeliveryState`).
        evidence: for received messages, what an abuse report needs (the exact content
            bytes, the franking key and commitment, the relay's tag and context, both
            identity keys), encoded; opaque to applications (see :meth:`Client.report`).
        timer: the disappearing-message timer it was sent with (seconds; 0: none).
        expires_at: when it is removed (our clock): ``sent_at + timer`` for ours, first
            display (:meth:`Client.mark_read`) ``+ timer`` for received ones; ``None``
            while it has no timer or is not displayed yet.
        seen: a received message was displayed (:meth:`Client.mark_read`).
        edited_at: the sender's clock at the latest edit (``None``: never edited).
        deleted: the author deleted it for everyone; ``text`` is empty.
        reactions: ``(("me"|"peer", emoji), ...)``, at most one per side.
        attachment: the file the message carries (its caption is ``text``), or None.
    """

    contact_id: str
    id: str
    direction: Direction
    text: str = field(repr=False)
    sent_at: int
    received_at: int
    state: DeliveryState
    evidence: bytes | None = field(default=None, repr=False, compare=False)
    timer: int = 0
    expires_at: int | None = None
    seen: bool = False
    edited_at: int | None = None
    deleted: bool = False
    reactions: tuple[tuple[str, str], ...] = ()
    attachment: Attachment | None = None


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message arrived and is durably stored (it was acked to the relay after that)."""

    contact: Contact
    message: StoredMessage


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A contact request arrived on one of our contact addresses."""

    request: ContactRequest


@dataclass(frozen=True, slots=True)
class ContactAdded:
    """A conversation is ready: we accepted a request, or our request was accepted."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class SessionRenewed:
    """A new session with a contact replaced the old one, from the same identity key: the
    safety number is unchanged and a verified contact stays verified (protocol.md §24.4).
    It follows a restore from a backup, on both sides; messages sealed under the old
    session that were still on their way cannot be read any more."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class Device:
    """One of our devices (protocol.md §24.5): ``id`` (hex) as in the signed device list."""

    id: str
    name: str
    this_device: bool


@dataclass(frozen=True, slots=True)
class DeviceLinked:
    """A new device joined our identity (shown on every device of ours)."""

    device: Device


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    """A device was removed from our device list; ``device.this_device``: this one (it
    receives nothing more from contacts that follow the list)."""

    device: Device


@dataclass(frozen=True, slots=True)
class DevicesChanged:
    """A contact's signed device list changed (a device was linked or removed): its safety
    number is the same, but the contact is unverified until compared again (§24.7)."""

    contact: Contact
    devices: int


@dataclass(frozen=True, slots=True)
class MessageSynced:
    """A message we sent from another of our devices, now in this device's history."""

    contact: Contact
    message: StoredMessage


@dataclass(frozen=True, slots=True)
class DeliveryChanged:
    """An outgoing message changed state (``sent`` once the relay stored it, or ``failed``;
    ``delivered``/``read`` when the contact's receipt arrived)."""

    contact_id: str
    message_id: str
    state: DeliveryState


@dataclass(frozen=True, slots=True)
class ClientWarning:
    """Something the user or the app may want to know about; the client carries on.

    ``prekeys_low``/``prekeys_exhausted``: requests are arriving faster than the client refills
    one-time prekeys (requests still work, with less forward secrecy until refilled).
    ``undecryptable``: an envelope that no key opens was dropped. ``malformed_content``: an
    authenticated message from a contact did not decode and was dropped. ``mailbox_lost``: the
    relay no longer knows one of our mailboxes. ``duplicate_request``: a replayed contact
    request was ignored. ``request_refused``: the relay refused our contact request for good
    (``detail``: ``BOUNDARY``, ``POW``, ``QUOTA`` or ``AUTH``). ``content_refused``: a contact
    sent something our settings do not accept; it was dropped. ``unreportable``: a message
    committing to attachments (which this client cannot fetch yet, so a report could never
    verify: issue 20, finding 2) was dropped, not shown. ``storage_failed``: the
    keystore or history could not be written; the client stopped (nothing more is
    acknowledged) and must be reopened. ``forged_reference``: a contact's unsend, edit or
    reaction named a message that does not exist or (unsend, edit) that it did not write;
    ignored.
    """

    kind: WarningKind
    detail: str = ""
    contact_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReportResolved:
    """A moderator resolved one of our abuse reports (``action``: ``none``, ``revoke`` or
    ``suspend``)."""

    report_id: str
    action: str | None


@dataclass(frozen=True, slots=True)
class ReportDetails:
    """One report we filed, as :meth:`Client.report_details` lists it.

    ``kind``: ``message`` (a received message), ``request`` (a contact request) or ``group``
    (a group message, protocol.md §26.9: ``contact_id`` is then the group id); ``reason``:
    as filed (None for reports filed before it was kept); ``action``: what the moderator did
    (``none``, ``revoke``, ``suspend``), None while open; ``filed``: seconds.
    """

    id: str
    contact_id: str
    status: str
    kind: str
    reason: str | None
    action: str | None
    filed: int


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """The connection to the relay went down (``online=False``) or came back."""

    online: bool


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Everything that waited at the relay when we (re)connected has been processed."""


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """The contact started (``typing=True``) or stopped typing; a start with no keep-alive
    for :data:`~clientlib.client.TYPING_TIMEOUT` seconds reads as a stop."""

    contact_id: str
    typing: bool


@dataclass(frozen=True, slots=True)
class DisappearingChanged:
    """The conversation's disappearing-message timer changed (``seconds``, 0: off), set by
    ``by`` (``me`` or ``peer``)."""

    contact_id: str
    seconds: int
    by: Literal["me", "peer"]


@dataclass(frozen=True, slots=True)
class MessageChanged:
    """A stored message changed: ``edited``, ``deleted`` (for everyone), ``reaction``, or
    ``read`` (read on another device of ours, protocol.md §24.7); ``message`` is the new
    state."""

    message: StoredMessage
    change: Literal["edited", "deleted", "reaction", "read"]


@dataclass(frozen=True, slots=True)
class MessageExpired:
    """A disappearing message reached its expiry and was removed (crypto-shredded)."""

    contact_id: str
    message_id: str
    direction: Direction


GroupEventKind = Literal[
    "receipt",
    "typing",
    "stopped_typing",
    "invited",
    "declined",
    "joined",
    "message",
    "member_added",
    "member_removed",
    "member_left",
    "removed",
    "role",
    "settings",
]


@dataclass(frozen=True, slots=True)
class GroupEvent:
    """Something happened in a group (protocol.md §26): ``invited`` (``text``: the group's
    name, ``member``: who invited, ``invite_id`` to accept or decline), ``declined``,
    ``joined``, ``message`` (``member`` wrote ``text``), ``member_added``, ``member_removed``,
    ``member_left``, ``removed`` (we were removed: nothing more arrives), ``role`` (``text``:
    the new role of ``member``), ``settings``, ``typing`` / ``stopped_typing`` (``member``
    started or stopped typing; a start without a keep-alive for
    :data:`~clientlib.client.TYPING_TIMEOUT` seconds reads as a stop), ``receipt``
    (``member`` got, ``text`` = ``delivered``, or read, ``text`` = ``read``, our message
    ``message_id``)."""

    group_id: str
    kind: GroupEventKind
    member: str | None = None
    text: str | None = None
    message_id: str | None = None
    ts: int = 0
    mine: bool = False
    invite_id: str | None = None
    #: Our own message: ``sent`` (the relay stored every copy) or ``queued`` (offline: it
    #: goes out on the next connect, in order); empty for others' events.
    state: str = ""
    #: A ``message`` that carries a file (:meth:`Client.download` fetches it).
    attachment: Attachment | None = None


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group as we see it: ``status`` ``joining`` (accepted, welcome not yet here),
    ``active``, ``left`` or ``removed``; our ``role``; the settings."""

    id: str
    name: str
    status: str
    epoch: int
    members: int
    role: str
    post: str
    media: bool
    ttl: int


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One member: ``id`` (its per-group key, hex), the name it chose, its role, whether it is
    us, and our contact id if it is one of our contacts (same identity key)."""

    id: str
    name: str
    role: str
    me: bool
    contact_id: str | None


ClientEvent = (
    MessageReceived
    | RequestReceived
    | ContactAdded
    | DeliveryChanged
    | ClientWarning
    | ConnectionChanged
    | CaughtUp
    | ReportResolved
    | TypingChanged
    | DisappearingChanged
    | MessageChanged
    | MessageExpired
    | GroupEvent
    | SessionRenewed
    | DeviceLinked
    | DeviceRemoved
    | DevicesChanged
    | MessageSynced
)
