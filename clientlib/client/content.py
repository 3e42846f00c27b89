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

from clientlib.client.relayurl import MAX_RELAY_URL_BYTES, InvalidRelayUrl, normalize_relay_url
from clientlib.errors import WireError
from clientlib.wire.codec import Bin, Field, Int, IntIn, ListOf, Struct, Text, decode_map
from clientlib.wire.limits import MAILBOX_ID_SIZE

__all__ = [
    "MAX_CAPTION_BYTES",
    "MAX_DISAPPEAR_SECONDS",
    "MAX_EMOJI_BYTES",
    "MAX_FILENAME_BYTES",
    "MAX_INTRO_BYTES",
    "MAX_MIME_BYTES",
    "MAX_NAME_BYTES",
    "MAX_RECEIPT_IDS",
    "MAX_TEXT_BYTES",
    "MAX_THUMBNAIL_BYTES",
    "MESSAGE_ID_SIZE",
    "Accept",
    "ContactRequestContent",
    "Content",
    "ConversationSettings",
    "DeviceListContent",
    "DisappearTimer",
    "EditMessage",
    "FileMessage",
    "GroupPairwise",
    "OwnAction",
    "Reaction",
    "Receipt",
    "SentCopy",
    "TextMessage",
    "Typing",
    "Unsend",
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
#: A file message (protocol.md §25.3): caption, file name, media type and thumbnail.
MAX_CAPTION_BYTES = 4096
MAX_FILENAME_BYTES = 255
MAX_MIME_BYTES = 127
MAX_THUMBNAIL_BYTES = 16384
# Room for the optional fields of a message; a file message with the largest caption, name
# and thumbnail fits under it too (about 20.9 KiB).
_MAX_CONTENT_SIZE = MAX_CAPTION_BYTES + MAX_THUMBNAIL_BYTES + 1024
#: Message ids one receipt (or one message's piggy-backed receipts) may carry: 16 ids keep a
#: receipt in the smallest bucket a franked ratchet message reaches (1,024 bytes, §14).
MAX_RECEIPT_IDS = 16
#: A reaction: one emoji (a grapheme cluster can be several code points), or empty to remove.
MAX_EMOJI_BYTES = 32
#: Disappearing-message timers: up to the relay's default envelope TTL cap (a year is plenty).
MAX_DISAPPEAR_SECONDS = 366 * 86400


_SID = Bin(MAILBOX_ID_SIZE)
_MSG_ID = Bin(MESSAGE_ID_SIZE)
#: A send capability (protocol.md §4.8): 32 random bytes for one contact's pairwise mailbox.
_CAP = Bin(32)
_FLAG = Int(0, 1)
_IDS = ListOf(_MSG_ID, MAX_RECEIPT_IDS)
_TS = Int(0, 2**40)


class _RelayUrl(Text):
    """A relay URL (protocol.md §27.1): text that :func:`normalize_relay_url` accepts, kept
    in its normal form."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(MAX_RELAY_URL_BYTES)

    def check(self, value: object) -> str:
        try:
            return normalize_relay_url(super().check(value))
        except InvalidRelayUrl:
            raise WireError("field must be a relay URL") from None


class Content(Struct):
    """Base of every content structure."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, repr=False)
class ContactRequestContent(Content):
    """The first message to a contact address (inside the prekey message).

    ``reply`` is the send id of the pairwise mailbox the requester created for this contact
    and ``cap`` the send capability it registered there: where and how the recipient writes
    if it accepts. ``relay`` (revision 11) names the relay that mailbox is on, when it is not
    the relay of the address the request was sent to (protocol.md §27.1).
    """

    TYPE: ClassVar[str] = "req"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("reply", "reply", _SID),
        Field("cap", "cap", _CAP),
        Field("name", "name", Text(MAX_NAME_BYTES), required=False),
        Field("intro", "intro", Text(MAX_INTRO_BYTES), required=False),
        Field("relay", "relay", _RelayUrl(), required=False),
    )
    reply: bytes
    cap: bytes
    name: str | None = None
    intro: str | None = None
    relay: str | None = None

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
    """A text message. ``ts`` is the sender's clock in whole seconds (informational).

    ``exp``: the conversation's disappearing-message timer in seconds when it was sent
    (protocol.md §22.10); ``dlv``/``rd``: delivery and read receipts carried along
    (piggy-backed, §22.11) instead of in a :class:`Receipt` of their own.
    """

    TYPE: ClassVar[str] = "msg"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _MSG_ID),
        Field("ts", "ts", _TS),
        Field("text", "text", Text(MAX_TEXT_BYTES)),
        Field("exp", "exp", Int(1, MAX_DISAPPEAR_SECONDS), required=False),
        Field("dlv", "dlv", _IDS, required=False),
        Field("rd", "rd", _IDS, required=False),
    )
    id: bytes
    ts: int
    text: str
    exp: int | None = None
    dlv: tuple[bytes, ...] | None = None
    rd: tuple[bytes, ...] | None = None

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
        Field("delivery", "delivery", _FLAG, required=False),
    )
    receipts: int
    typing: int
    media: int
    delivery: int | None = None  # absent: 1 (clients before delivery receipts)


@dataclass(frozen=True, slots=True)
class Receipt(Content):
    """Delivery (``dlv``) and read (``rd``) receipts for messages the recipient sent us;
    at least one list is non-empty (protocol.md §22.11)."""

    TYPE: ClassVar[str] = "rcp"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("dlv", "dlv", _IDS, required=False),
        Field("rd", "rd", _IDS, required=False),
    )
    dlv: tuple[bytes, ...] | None = None
    rd: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class Typing(Content):
    """A typing indicator (online-only envelope, never stored): ``on`` 1 start or
    keep-alive, 0 stop (protocol.md §22.12)."""

    TYPE: ClassVar[str] = "typ"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("on", "on", _FLAG),)
    on: int


@dataclass(frozen=True, slots=True)
class DisappearTimer(Content):
    """The conversation's disappearing-message timer changed: ``secs`` (0: off), with the
    change counter ``v`` that orders concurrent changes (protocol.md §22.10)."""

    TYPE: ClassVar[str] = "dis"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("secs", "secs", Int(0, MAX_DISAPPEAR_SECONDS)),
        Field("v", "v", Int(1, 2**32 - 1)),
    )
    secs: int
    v: int


@dataclass(frozen=True, slots=True)
class Unsend(Content):
    """Delete for everyone the sender's own message ``ref`` (protocol.md §22.13)."""

    TYPE: ClassVar[str] = "del"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("ref", "ref", _MSG_ID),)
    ref: bytes


@dataclass(frozen=True, slots=True, repr=False)
class EditMessage(Content):
    """Replace the text of the sender's own message ``ref`` (protocol.md §22.13)."""

    TYPE: ClassVar[str] = "edit"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("ref", "ref", _MSG_ID),
        Field("ts", "ts", _TS),
        Field("text", "text", Text(MAX_TEXT_BYTES)),
    )
    ref: bytes
    ts: int
    text: str

    def __repr__(self) -> str:
        return f"EditMessage(ref={self.ref.hex()}, text=<redacted>)"


@dataclass(frozen=True, slots=True)
class Reaction(Content):
    """The sender's reaction to message ``ref`` (``mine`` 1: a message the sender sent, 0:
    one it received); ``emoji`` empty removes it. One per user per message, replaceable."""

    TYPE: ClassVar[str] = "rx"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("ref", "ref", _MSG_ID),
        Field("mine", "mine", _FLAG),
        Field("emoji", "emoji", Text(MAX_EMOJI_BYTES)),
    )
    ref: bytes
    mine: int
    emoji: str


@dataclass(frozen=True, slots=True, repr=False)
class FileMessage(Content):
    """A file (protocol.md §25.3): the descriptor of one encrypted blob on the relay.

    ``blob``/``tok``: the blob id and read token; ``key``: the attachment key; ``cd``: SHA-256
    of the whole blob; ``size``: plaintext bytes; ``cs``: plaintext bytes per chunk; ``mime``:
    media type; ``name``: optional file name (no directories); ``text``: optional caption;
    ``thumb``: optional JPEG thumbnail; ``vo``: 1 for view-once; ``exp``: the disappearing
    timer, as for text. The SHA-256 of the plaintext is not here: it is the message's one
    attachment hash under the franking commitment (§12.4, §15.1).
    """

    TYPE: ClassVar[str] = "file"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("id", "id", _MSG_ID),
        Field("ts", "ts", _TS),
        Field("blob", "blob", Bin(16)),
        Field("tok", "tok", Bin(32)),
        Field("key", "key", Bin(32)),
        Field("cd", "cd", Bin(32)),
        Field("size", "size", Int(0, 2**40)),
        Field("cs", "cs", IntIn(tuple(1 << n for n in range(12, 21)))),
        Field("mime", "mime", Text(MAX_MIME_BYTES)),
        Field("name", "name", Text(MAX_FILENAME_BYTES), required=False),
        Field("text", "text", Text(MAX_CAPTION_BYTES), required=False),
        Field("thumb", "thumb", Bin(min=1, max=MAX_THUMBNAIL_BYTES), required=False),
        Field("vo", "vo", Int(1, 1), required=False),
        Field("exp", "exp", Int(1, MAX_DISAPPEAR_SECONDS), required=False),
    )
    id: bytes
    ts: int
    blob: bytes
    tok: bytes
    key: bytes
    cd: bytes
    size: int
    cs: int
    mime: str
    name: str | None = None
    text: str | None = None
    thumb: bytes | None = None
    vo: int | None = None
    exp: int | None = None

    def __repr__(self) -> str:
        return f"FileMessage(id={self.id.hex()}, size={self.size}, <redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class DeviceListContent(Content):
    """The sender's signed device list (protocol.md §24.7), sent to every contact and to our
    own devices whenever it changes; ``me`` is the sending device's id."""

    TYPE: ClassVar[str] = "dl"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("l", "l", Bin(min=70, max=70 + 5 * (17 + 32))),
        Field("me", "me", Bin(16)),
    )
    l: bytes  # noqa: E741
    me: bytes

    def __repr__(self) -> str:
        return "DeviceListContent(<redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class SentCopy(Content):
    """A text message we sent to contact ``to`` from one device, for our other devices
    (protocol.md §24.7): only accepted from our own identity."""

    TYPE: ClassVar[str] = "snt"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("to", "to", Bin(16)),
        Field("id", "id", _MSG_ID),
        Field("ts", "ts", _TS),
        Field("text", "text", Text(MAX_TEXT_BYTES)),
    )
    to: bytes
    id: bytes
    ts: int
    text: str

    def __repr__(self) -> str:
        return "SentCopy(<redacted>)"


@dataclass(frozen=True, slots=True, repr=False)
class OwnAction(Content):
    """Something we did on one device in the conversation with contact ``to``, for our other
    devices (protocol.md §24.7): ``c`` is one encoded content, an unsend (``del``), edit
    (``edit``) or reaction (``rx``) of ours, or the messages we read (``rcp`` with ``rd``
    only). Only accepted from our own identity."""

    TYPE: ClassVar[str] = "own"
    SCHEMA: ClassVar[tuple[Field, ...]] = (
        Field("to", "to", Bin(16)),
        Field("c", "c", Bin(min=1, max=MAX_TEXT_BYTES + 256)),
    )
    to: bytes
    c: bytes

    def __repr__(self) -> str:
        return "OwnAction(<redacted>)"


_REGISTRY: dict[str, type[Content]] = {
    cls.TYPE: cls
    for cls in (
        ContactRequestContent,
        Accept,
        TextMessage,
        ConversationSettings,
        Receipt,
        Typing,
        DisappearTimer,
        Unsend,
        EditMessage,
        Reaction,
        FileMessage,
        DeviceListContent,
        SentCopy,
        OwnAction,
    )
}


@dataclass(frozen=True, slots=True, repr=False)
class GroupPairwise(Content):
    """A group invitation, join or decline inside a pairwise session (protocol.md §26.6):
    ``body`` is the msgpack array the groups module reads."""

    TYPE: ClassVar[str] = "grp"
    SCHEMA: ClassVar[tuple[Field, ...]] = (Field("body", "body", Bin(min=1, max=4096)),)
    body: bytes

    def __repr__(self) -> str:
        return "GroupPairwise(<redacted>)"


_REGISTRY[GroupPairwise.TYPE] = GroupPairwise


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
