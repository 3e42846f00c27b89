"""Conversation content: what travels inside a ratchet message (protocol.md §22).

The plaintext of every message a :class:`~clientlib.client.Client` sends is one *content*
structure, encoded like every v1 structure (``0x01 || msgpack map`` with a ``t`` field) and
decoded as strictly: unknown types, unknown fields, wrong types or over-long text are a
:class:`~clientlib.errors.WireError`, and the client drops such a message (it was
authenticated, so it is acked, recorded as undecodable and reported as a warning).

The relay never sees any of this; it is all inside the sealed, padded envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clientlib.errors import WireError
from clientlib.wire.codec import Bin, Field, Int, Struct, Text, decode_map
from clientlib.wire.limits import MAILBOX_ID_SIZE

__all__ = [
    "MAX_INTRO_BYTES",
    "MAX_NAME_BYTES",
    "MAX_TEXT_BYTES",
    "MESSAGE_ID_SIZE",
    "Accept",
    "ContactRequestContent",
    "Content",
    "TextMessage",
    "decode_content",
]

#: Display names are a courtesy, not an identity; short enough for one line.
MAX_NAME_BYTES = 64
#: The introduction shown with a contact request, before the recipient decides.
MAX_INTRO_BYTES = 1024
#: A text message (UTF-8 bytes). Fits the 16 KiB envelope bucket with room for the header.
MAX_TEXT_BYTES = 16 * 1024 - 512
#: Client-chosen message id (random), used for deduplication and delivery state.
MESSAGE_ID_SIZE = 16
_MAX_CONTENT_SIZE = MAX_TEXT_BYTES + 256


_SID = Bin(MAILBOX_ID_SIZE)
_MSG_ID = Bin(MESSAGE_ID_SIZE)
#: A send capability (protocol.md §4.8): 32 random bytes for one contact's pairwise mailbox.
_CAP = Bin(32)
_FLAG = Int(0, 1)


class Content(Struct):
    """Base of every content structure."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False)
class ContactRequestContent(Content):
    """The first message to a contact address (inside the prekey message).

    ``reply`` is the send id of the pairwise mailbox the requester created for this contact
    and ``cap`` the send capability it registered there: where and how the recipient writes
    if it accepts.
    """

    TYPE: ClassVar[str] = "req"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("reply", "reply", _SID),
        Field("cap", "cap", _CAP),
        Field("name", "name", Text(MAX_NAME_BYTES), required=False),
        Field("intro", "intro", Text(MAX_INTRO_BYTES), required=False),
    )
    reply: bytes
    cap: bytes
    name: str | None = None
    intro: str | None = None

    def __repr__(self) -> str:
        return "ContactRequestContent(<redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class Accept(Content):
    """The recipient accepted: ``reply`` is the send id of its pairwise mailbox for us and
    ``cap`` the send capability registered there for us."""

    TYPE: ClassVar[str] = "acc"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("reply", "reply", _SID),
        Field("cap", "cap", _CAP),
        Field("name", "name", Text(MAX_NAME_BYTES), required=False),
    )
    reply: bytes
    cap: bytes
    name: str | None = None

    def __repr__(self) -> str:
        return "Accept(<redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class TextMessage(Content):
    """A text message. ``ts`` is the sender's clock in whole seconds (informational)."""

    TYPE: ClassVar[str] = "msg"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _MSG_ID),
        Field("ts", "ts", Int(0, 2**40)),
        Field("text", "text", Text(MAX_TEXT_BYTES)),
    )
    id: bytes
    ts: int
    text: str

    def __repr__(self) -> str:
        return f"TextMessage(id={self.id.hex()}, text=<redacted>)"


@dataclass(frozen=True, slots=True)
class ConversationSettings(Content):
    """The sender's privacy settings for this conversation, sent whenever they change.

    ``receipts``/``typing``: whether the sender sends (and wants) read receipts and typing
    indicators. ``media``: whether the sender accepts media (attachments) from us; a client
    MUST NOT send what its contact does not accept, and drops what it does not accept itself.
    """

    TYPE: ClassVar[str] = "set"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("receipts", "receipts", _FLAG),
        Field("typing", "typing", _FLAG),
        Field("media", "media", _FLAG),
    )
    receipts: int
    typing: int
    media: int


_REGISTRY: dict[str, type[Content]] = {
    cls.TYPE: cls for cls in (ContactRequestContent, Accept, TextMessage, ConversationSettings)
}


def decode_content(data: bytes) -> Content:
    """Decode one content structure strictly.

    Raises:
        WireError: not a well-formed v1 content structure.
    """
    _, fields = decode_map(data, max_size=_MAX_CONTENT_SIZE)
    t: Any = fields.get("t")
    cls = _REGISTRY.get(t) if type(t) is str else None
    if cls is None:
        raise WireError("unknown content type")
    return cls.from_map(fields)
