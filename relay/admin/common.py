"""What the admin CLI and the moderation page share: report references and suspend targets."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import TYPE_CHECKING, Final

from clientlib.wire.limits import MAILBOX_ID_SIZE

if TYPE_CHECKING:
    from relay.moderation import ModerationService, ReportView

__all__ = [
    "MIN_ID_PREFIX",
    "AdminInputError",
    "find_report",
    "format_time",
    "parse_suspend_target",
    "verification_summary",
]

#: Shortest report id prefix accepted: 6 hex digits (24 bits) name one report among the
#: few thousand a queue holds, and are still easy to type.
MIN_ID_PREFIX: Final = 6
#: Reports scanned to resolve a prefix (the service's largest listing): every open report
#: up to that many, and as many of the newest reports. Older ones need the full id.
PREFIX_SCAN_LIMIT: Final = 1000
_HEX = re.compile(r"[0-9a-f]+")
_INVITE_PATH = "/v1/invite"
_ADDRESS_KEY_SIZE = 32
#: The cryptographic checks of ``ReportView.verified`` and the values that mean "passed".
CHECKS: Final = ("commitment", "relay_tag")
VALID_MARKS: Final = frozenset({"ok", "valid", "verified"})


class AdminInputError(ValueError):
    """A report reference or suspend target that cannot be used; the message says why."""


async def find_report(service: ModerationService, ref: str) -> ReportView:
    """The report whose id is ``ref`` or starts with it (at least 6 hex digits).

    Raises:
        AdminInputError: not hex, too short, unknown, or a prefix of several reports.
    """
    ref = ref.strip().lower()
    if not _HEX.fullmatch(ref) or len(ref) < MIN_ID_PREFIX:
        raise AdminInputError(f"a report id is at least {MIN_ID_PREFIX} hex digits")
    report = await service.get_report(ref)
    if report is not None:
        return report
    found: dict[str, ReportView] = {}
    for status in ("open", None):
        for r in await service.list_reports(status=status, limit=PREFIX_SCAN_LIMIT):
            if r.id.startswith(ref):
                found[r.id] = r
    matches = list(found.values())
    if not matches:
        raise AdminInputError("no such report")
    if len(matches) > 1:
        raise AdminInputError(f"the prefix matches {len(matches)} reports; type more of the id")
    return matches[0]


def parse_suspend_target(text: str) -> bytes:
    """The send id to suspend: 32 hex digits, or an invitation link (protocol.md §21.2).

    Raises:
        AdminInputError: neither form.
    """
    text = text.strip()
    if _INVITE_PATH in text and "#" in text:
        base, _, token = text.partition("#")
        if not base.endswith(_INVITE_PATH):
            raise AdminInputError("not a blindrelay invitation link")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise AdminInputError("the invitation token is not base64url") from None
        # v1; v2 adds a 16-byte IK hash; v3 (revision 11) a 16-byte relay identity hash too
        base_len = 1 + MAILBOX_ID_SIZE + _ADDRESS_KEY_SIZE
        known = ((b"\x01", base_len), (b"\x02", base_len + 16), (b"\x03", base_len + 32))
        if (raw[:1], len(raw)) not in known:
            raise AdminInputError("unsupported or damaged invitation link")
        return raw[1 : 1 + MAILBOX_ID_SIZE]
    lowered = text.lower()
    if len(lowered) != 2 * MAILBOX_ID_SIZE or not _HEX.fullmatch(lowered):
        raise AdminInputError(
            f"a send id is {2 * MAILBOX_ID_SIZE} hex digits (or give an invitation link)"
        )
    return bytes.fromhex(lowered)


def verification_summary(report: ReportView) -> bool:
    """Whether the relay verified the sender's commitment and its own tag (protocol.md
    §4.11); the other entries of ``verified`` describe the context."""
    return all(report.verified.get(name, "").lower() in VALID_MARKS for name in CHECKS)


#: Content types (protocol.md §22.1 ``t``) in words; any other is shown as sent.
CONTENT_TYPE_WORDS = {
    "msg": "text message",
    "req": "contact request",
    "acc": "acceptance of a contact request",
    "set": "privacy settings",
    "gmsg": "group message",
}


def describe_content_type(t: str | None) -> str:
    """``"msg"`` -> ``"text message (msg)"``; unknown types as sent; None -> ``-``."""
    if not t:
        return "-"
    words = CONTENT_TYPE_WORDS.get(t)
    return f"{words} ({t})" if words else t


def describe_day(day: int) -> str:
    """A UTC day number (days since the epoch) as ``YYYY-MM-DD (UTC day N)``."""
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86400)) + f" (UTC day {day})"


def format_time(ts: int | None) -> str:
    """``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))
