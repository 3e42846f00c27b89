"""What the application layer sees of a relay transport: events and mailbox credentials.

Nothing in here touches the network or any key material: an owner's secret key stays with
the caller, who hands the transport a ``sign`` callback instead (protocol.md §4.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clientlib.errors import LocalProtocolError, WireError
from clientlib.wire import (
    ATTACHMENT_ID_SIZE,
    CAPABILITY_SIZE,
    CHALLENGE_SIZE,
    FRANKING_KEY_SIZE,
    FRANKING_TAG_SIZE,
    HANDLE_SIZE,
    KIND_ADDRESS,
    KIND_OPEN,
    MAILBOX_ID_SIZE,
    MAILBOX_KINDS,
    MAX_ATTACHMENT_REFS,
    MAX_FRANKING_CONTEXT_SIZE,
    MAX_OWNER_COMMAND_SIZE,
    MAX_PREKEY_ITEM_SIZE,
    MAX_PREKEY_STATIC_SIZE,
    MAX_PREKEY_UPLOAD,
    MAX_REPORT_ATTACHMENTS,
    MAX_REPORT_NOTE_BYTES,
    MAX_REPORTED_MESSAGE_SIZE,
    OP_REPORT,
    POW_NONCE_SIZE,
    REPORT_ID_SIZE,
    REPORT_REASONS,
    Boundaries,
    OwnerCommand,
    StoredEnvelope,
    Text,
)
from clientlib.wire.limits import ED25519_PUBLIC_KEY_SIZE, FRANKING_COMMITMENT_SIZE

__all__ = [
    "CaughtUp",
    "Delivered",
    "Disconnected",
    "MailboxCredential",
    "Reconnected",
    "SignFn",
    "SubscriptionLost",
    "TransportEvent",
    "check_id",
    "check_report_id",
    "create_fields",
    "deposit_fields",
    "id_list",
    "prekey_chunks",
    "report_fields",
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


#: One ``keys`` owner command's prekey fields: ``(static, otk, replace)`` as they go on the wire.
PreKeyChunk = tuple[bytes | None, tuple[bytes, ...] | None, int | None]


def prekey_chunks(
    static: bytes | None, one_time: Sequence[bytes], replace: bool
) -> list[PreKeyChunk]:
    """Split a prekey upload into ``keys`` commands of at most ``MAX_PREKEY_UPLOAD`` items.

    The first command carries ``static`` and ``replace``; with no items there is exactly one
    command (a status query if it carries nothing at all).

    Raises:
        LocalProtocolError: ``static`` or an item is empty or above its size limit.
    """
    if static is not None and not 1 <= len(static) <= MAX_PREKEY_STATIC_SIZE:
        raise LocalProtocolError(f"static prekey part must be 1..{MAX_PREKEY_STATIC_SIZE} bytes")
    items = tuple(one_time)
    for item in items:
        if not 1 <= len(item) <= MAX_PREKEY_ITEM_SIZE:
            raise LocalProtocolError(
                f"one-time prekey items must be 1..{MAX_PREKEY_ITEM_SIZE} bytes"
            )
    groups = [items[i : i + MAX_PREKEY_UPLOAD] for i in range(0, len(items), MAX_PREKEY_UPLOAD)]
    chunks: list[PreKeyChunk] = []
    for n, group in enumerate(groups or [()]):
        first = n == 0
        chunks.append((static if first else None, group or None, 1 if first and replace else None))
    return chunks


def id_list(values: Sequence[bytes], size: int, limit: int, what: str) -> tuple[bytes, ...] | None:
    """Check a list of fixed-size ids for one owner command; None when it is empty.

    Raises:
        LocalProtocolError: more than ``limit`` items, or an item not ``size`` bytes long.
    """
    items = tuple(values)
    if len(items) > limit:
        raise LocalProtocolError(f"at most {limit} {what} per call")
    if any(len(v) != size for v in items):
        raise LocalProtocolError(f"{what} must be {size} bytes each")
    return items or None


def create_fields(kind: str, boundaries: Boundaries | None) -> dict[str, Any]:
    """The ``kind`` and ``bnd`` fields of a ``create`` command (none for an open mailbox, so
    that relays before revision 3 accept it).

    Raises:
        LocalProtocolError: an unknown kind, or boundaries for a kind other than ``addr``.
    """
    if kind not in MAILBOX_KINDS:
        raise LocalProtocolError(f"kind must be one of {', '.join(MAILBOX_KINDS)}")
    if boundaries is not None and kind != KIND_ADDRESS:
        raise LocalProtocolError("only contact addresses (kind 'addr') have boundaries")
    return {"kind": None if kind == KIND_OPEN else kind, "bnd": boundaries}


def deposit_fields(
    cap: bytes | None,
    hdl: bytes | None,
    att: Sequence[bytes],
    pow: tuple[bytes, int] | None,
) -> dict[str, Any]:
    """The revision-3 fields of a deposit (protocol.md §4.8, §4.9), checked.

    Raises:
        LocalProtocolError: a wrong length, too many attachment ids, or a counter outside
            ``0..2**64-1``.
    """
    if cap is not None and len(cap) != CAPABILITY_SIZE:
        raise LocalProtocolError(f"cap must be {CAPABILITY_SIZE} bytes")
    if hdl is not None and len(hdl) != HANDLE_SIZE:
        raise LocalProtocolError(f"hdl must be {HANDLE_SIZE} bytes")
    refs = id_list(att, ATTACHMENT_ID_SIZE, MAX_ATTACHMENT_REFS, "attachment ids")
    nonce: bytes | None = None
    counter: int | None = None
    if pow is not None:
        nonce, counter = pow
        if len(nonce) != POW_NONCE_SIZE or not 0 <= counter < 2**64:
            raise LocalProtocolError("pow must be a 16-byte nonce and a 64-bit counter")
    return {"cap": cap, "hdl": hdl, "att": refs, "pow": nonce, "pwc": counter}


def report_fields(
    *,
    msg: bytes,
    fk: bytes,
    fc: bytes,
    ft: bytes,
    fx: bytes,
    sender: bytes,
    recipient: bytes,
    attachments: Sequence[bytes],
    reason: str,
    note: str | None,
    amf: bytes | None = None,
    akid: int | None = None,
    attachment_hashes: Sequence[bytes] = (),
) -> dict[str, Any]:
    """The fields of a ``report`` owner command (protocol.md §4.11), checked.

    ``attachment_hashes`` (revision 8, instead of ``attachments``): the SHA-256 of each
    attachment plaintext, which is then revealed with ``PUT /v1/report/<report>/<i>``
    (:meth:`clientlib.transport.HTTPTransport.reveal_attachment`), for files too large for
    one owner command.

    Raises:
        LocalProtocolError: a wrong length, an unknown reason, a note over 1,000 bytes or
            with NUL, more than 16 attachments, or a report too large for one owner command
            (message and attachments together over about 80 KiB).
    """
    exact = (
        ("fk", fk, FRANKING_KEY_SIZE),
        ("fc", fc, FRANKING_COMMITMENT_SIZE),
        ("ft", ft, FRANKING_TAG_SIZE),
        ("sender", sender, ED25519_PUBLIC_KEY_SIZE),
        ("recipient", recipient, ED25519_PUBLIC_KEY_SIZE),
    )
    for name, value, size in exact:
        if len(value) != size:
            raise LocalProtocolError(f"{name} must be {size} bytes")
    if not 1 <= len(fx) <= MAX_FRANKING_CONTEXT_SIZE:
        raise LocalProtocolError(f"fx must be 1..{MAX_FRANKING_CONTEXT_SIZE} bytes")
    if (amf is None) != (akid is None):
        raise LocalProtocolError("amf and akid go together")
    if amf is not None and len(amf) != 448:
        raise LocalProtocolError("amf must be 448 bytes")
    if akid is not None and not 0 <= akid < 2**32:
        raise LocalProtocolError("akid is a u32")
    if len(msg) > MAX_REPORTED_MESSAGE_SIZE:
        raise LocalProtocolError(f"msg must be at most {MAX_REPORTED_MESSAGE_SIZE} bytes")
    atts = tuple(bytes(a) for a in attachments)
    hashes = tuple(bytes(h) for h in attachment_hashes)
    if atts and hashes:
        raise LocalProtocolError("reveal attachments inline or by hash, not both")
    if max(len(atts), len(hashes)) > MAX_REPORT_ATTACHMENTS:
        raise LocalProtocolError(f"at most {MAX_REPORT_ATTACHMENTS} attachments per report")
    if any(len(h) != 32 for h in hashes):
        raise LocalProtocolError("an attachment hash is 32 bytes (SHA-256 of the plaintext)")
    if reason not in REPORT_REASONS:
        raise LocalProtocolError(f"reason must be one of {', '.join(REPORT_REASONS)}")
    if note is not None:
        try:
            Text(MAX_REPORT_NOTE_BYTES).check(note)
        except WireError:
            raise LocalProtocolError(
                f"note must be at most {MAX_REPORT_NOTE_BYTES} bytes of UTF-8 without NUL"
            ) from None
    fields: dict[str, Any] = {
        "msg": bytes(msg),
        "fk": fk,
        "fc": fc,
        "ft": ft,
        "fx": fx,
        "snd": sender,
        "rcp": recipient,
        "atts": atts or None,
        "ath": hashes or None,
        "why": reason,
        "note": note,
        "amf": amf,
        "akid": akid,
    }
    # The encoded size does not depend on the nonce or the receive id (fixed lengths).
    probe = OwnerCommand(op=OP_REPORT, nonce=bytes(CHALLENGE_SIZE), rid=bytes(16), **fields)
    if len(probe.encode()) > MAX_OWNER_COMMAND_SIZE:
        raise LocalProtocolError(
            "the message and its attachments are too large to report in one owner command"
        )
    return fields


def check_report_id(report_id: bytes) -> None:
    """Raises: LocalProtocolError unless ``report_id`` is 16 bytes."""
    if len(report_id) != REPORT_ID_SIZE:
        raise LocalProtocolError(f"a report id is {REPORT_ID_SIZE} bytes")


def check_id(value: bytes, name: str) -> None:
    """Raises: LocalProtocolError unless ``value`` (a ``rid`` or ``sid``) is 16 bytes."""
    if len(value) != MAILBOX_ID_SIZE:
        raise LocalProtocolError(f"{name} must be {MAILBOX_ID_SIZE} bytes")
