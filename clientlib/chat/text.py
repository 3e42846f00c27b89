"""Turning untrusted text and client values into safe, stable lines of terminal output.

Names, introductions and messages come from other people. Printed raw, control characters
could move the cursor, recolour or clear the terminal, or fake lines of output (ANSI escape
injection), and bidirectional overrides could make text read differently from what it is.
:func:`clean` shows all of them as visible escapes.
"""

from __future__ import annotations

import time
import unicodedata

from clientlib.client import Attachment, ClientWarning, Contact, ContactRequest, StoredMessage
from clientlib.client.types import PrivacySettings
from clientlib.wire.frames import Boundaries

__all__ = [
    "boundaries_lines",
    "clean",
    "clock",
    "contact_label",
    "describe_warning",
    "duration",
    "file_label",
    "group_safety_number",
    "history_line",
    "human_size",
    "message_body",
    "on_off",
    "parse_duration",
    "privacy_line",
    "refusal_reason",
    "request_label",
    "short_id",
    "stamp",
    "utc_day",
    "utc_hour",
]

SHORT_ID = 8
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, *, multiline: bool = False) -> str:
    """``text`` with control, format and bidi characters escaped (``\\x1b``, ``\\u202e``).

    With ``multiline``, a newline stays a line break and the next line is indented by four
    spaces (so every output line still starts predictably); otherwise it is escaped too.
    """
    out = []
    for ch in text:
        if ch == "\n" and multiline:
            out.append("\n    ")
        elif ch == "\t":
            out.append("    ")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def short_id(ident: str) -> str:
    """The id prefix blindchat prints (any unique prefix of 4+ digits is accepted back)."""
    return ident[:SHORT_ID]


def contact_label(contact: Contact) -> str:
    """A contact's name, or its id prefix if it has none."""
    return clean(contact.name) if contact.name else short_id(contact.id)


def request_label(request: ContactRequest) -> str:
    return clean(request.name) if request.name else "(no name given)"


def group_safety_number(number: str, *, per_line: int = 4) -> list[str]:
    """The 60 digits as rows of ``per_line`` groups of 5."""
    digits = "".join(ch for ch in number if ch.isdigit())
    groups = [digits[i : i + 5] for i in range(0, len(digits), 5)]
    return [" ".join(groups[i : i + per_line]) for i in range(0, len(groups), per_line)]


def clock(ts: float | None = None) -> str:
    """``[HH:MM:SS]`` in local time (now, or at ``ts``)."""
    return time.strftime("[%H:%M:%S]", time.localtime(ts))


def stamp(ts: float) -> str:
    """``[YYYY-MM-DD HH:MM]`` in local time."""
    return time.strftime("[%Y-%m-%d %H:%M]", time.localtime(ts))


def message_body(message: StoredMessage, label: str) -> str:
    """``who: text`` with its marks: ``(edited)``, reactions, the disappearing timer, and
    for ours the delivery state (``queued``, ``delivered``, ``read``, ``failed``; nothing
    once the relay holds it)."""
    who = "you" if message.direction == "out" else label
    text = "(message deleted)" if message.deleted else clean(message.text, multiline=True)
    if message.attachment is not None and not message.deleted:
        text = f"{file_label(message.attachment)} {text}".rstrip()
    marks = []
    if message.edited_at is not None:
        marks.append("(edited)")
    if message.reactions:
        shown = ", ".join(
            f"{clean(e)} {'you' if w == 'me' else label}" for w, e in message.reactions
        )
        marks.append(f"[{shown}]")
    if message.timer:
        marks.append(f"(disappears {duration(message.timer)}")
        marks[-1] += " after reading)" if message.expires_at is None else ")"
    if message.direction == "out" and message.state != "sent":
        marks.append(f"({message.state})")
    return f"{who}: {text}" + ("  " + " ".join(marks) if marks else "")


def human_size(n: int) -> str:
    """``812 B``, ``4.1 kB``, ``1.2 MB``, ``3.4 GB`` (decimal units, one decimal)."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n_f = n / 1000
        if n_f < 1000 or unit == "TB":
            return f"{n_f:.1f} {unit}"
        n = int(n_f)
    return f"{n} B"  # pragma: no cover


def file_label(a: Attachment) -> str:
    """``[photo.jpg, 1.2 MB, id 3f2a]`` (``view-once``, ``opened`` when they apply); the
    name is the sender's, escaped."""
    parts = [clean(a.name) if a.name else clean(a.mime), human_size(a.size), f"id {a.id}"]
    if a.view_once:
        parts.insert(2, "view-once, opened" if a.viewed else "view-once")
    return "[" + ", ".join(parts) + "]"


def history_line(message: StoredMessage, label: str) -> str:
    return f"{stamp(message.received_at)} {message_body(message, label)}"


_UNITS = (("w", 7 * 86400, "week"), ("d", 86400, "day"), ("h", 3600, "hour"), ("m", 60, "minute"))


def duration(seconds: int) -> str:
    """``1 hour``, ``2 days``, ``90 seconds`` (a disappearing timer in words)."""
    for _, n, word in _UNITS:
        if seconds % n == 0:
            k = seconds // n
            return f"{k} {word}{'s' if k != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def parse_duration(text: str) -> int:
    """``off`` -> 0; ``30s``, ``5m``, ``1h``, ``1d``, ``1w`` (a positive whole number and a
    unit) -> seconds. ValueError otherwise."""
    t = text.strip().lower()
    if t in ("off", "0"):
        return 0
    units = {"s": 1, **{u: n for u, n, _ in _UNITS}}
    if len(t) >= 2 and t[-1] in units and t[:-1].isdigit() and int(t[:-1]) > 0:
        return int(t[:-1]) * units[t[-1]]
    raise ValueError("expected off, or a number with s, m, h, d or w (1h, 1d, 1w)")


def utc_day(day: int) -> str:
    """A day number (days since the epoch, UTC) as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400))


def utc_hour(hour: int) -> str:
    """An hour number (hours since the epoch) as ``YYYY-MM-DD HH:00 UTC``."""
    return time.strftime("%Y-%m-%d %H:00 UTC", time.gmtime(hour * 3600))


def on_off(value: bool | int) -> str:
    return "on" if value else "off"


def privacy_line(settings: PrivacySettings) -> str:
    """``receipts on, typing off, media on``."""
    return (
        f"receipts {on_off(settings.receipts)}, typing {on_off(settings.typing)}, "
        f"media {on_off(settings.media)}"
        + ("" if settings.delivery_receipts else ", delivery receipts off")
    )


def boundaries_lines(b: Boundaries, indent: str = "  ") -> list[str]:
    """The boundaries of a contact address, one per line."""
    pow_ = f"{b.pow} bits" if b.pow else "none"
    return [
        f"{indent}largest request:  {b.size} bytes",
        f"{indent}attachments:      {on_off(b.att)}",
        f"{indent}requests per day: {b.day}",
        f"{indent}proof of work:    {pow_}",
    ]


_REFUSALS = {
    "QUOTA": "daily limit reached (try again tomorrow)",
    "POW": "proof of work not accepted",
    "BOUNDARY": "too large for what the address accepts",
    "AUTH": "address gone or banned",
}


def refusal_reason(code: str) -> str:
    """Why the relay refused a contact request, from its error code (protocol.md §4.9)."""
    return _REFUSALS.get(code, f"relay answered {clean(code)}")


def describe_warning(ev: ClientWarning) -> str:
    if ev.kind == "request_refused":
        return f"contact request refused by the relay: {refusal_reason(ev.detail)}"
    if ev.kind == "mailbox_lost" and ev.contact_id:  # a deposit to the contact's mailbox
        return f"the relay refused a message: the contact's mailbox is gone ({clean(ev.detail)})"
    texts = {
        "prekeys_low": "refilling one-time prekeys at the relay",
        "prekeys_exhausted": "one-time prekeys ran out (requests still work, with less "
        "forward secrecy until they are refilled)",
        "undecryptable": "dropped a message that did not decrypt",
        "malformed_content": "dropped an authenticated message that did not decode",
        "mailbox_lost": "the relay no longer knows one of our mailboxes",
        "duplicate_request": "ignored a replayed contact request",
        "storage_failed": "the keystore or history could not be written; stopping",
        "content_refused": "dropped something your privacy settings for this conversation "
        "do not accept",
        "forged_reference": "ignored an unsend, edit or reaction naming a message the "
        "contact did not write",
    }
    text = texts.get(ev.kind, ev.kind)
    return f"{text} ({clean(ev.detail)})" if ev.detail else text
