"""Franked group texts and their report evidence (protocol.md §26.9, revision 16), for
:mod:`clientlib.client._groups`: the moderator key a text is franked under, the receiver's
checks, and the evidence a received text keeps for :meth:`Client.report_group_message`."""

from __future__ import annotations

import contextlib
from typing import Any

from clientlib.client._book import AddressBook, credential
from clientlib.client._group_records import _Live
from clientlib.client._link import Link
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._relays import modkeys_slot
from clientlib.client._reports import ReportEvidence
from clientlib.crypto.group import GroupError
from clientlib.crypto.group_frank import group_recipient, open_group_content, verify_group_text
from clientlib.errors import DecryptionError, LocalProtocolError, TransportError
from clientlib.session.session import ModeratorKey
from clientlib.transport import MailboxCredential
from clientlib.wire.frames import StoredEnvelope

__all__ = ["franked_evidence", "group_credential", "moderator_key", "received_evidence"]


def group_credential(live: dict[bytes, _Live], gid: bytes) -> MailboxCredential | None:
    """The owner credential of our mailbox in group ``gid`` while it exists (for reports)."""
    g = live.get(gid)
    if g is None or g.rec.status in ("left", "removed"):
        return None
    return credential(g.rec.rid, g.rec.owner)


async def moderator_key(book: AddressBook, link: Link, now: int) -> ModeratorKey:
    """Our relay's current moderator key (fetched if stale; offline: the stored list). Every
    member's group mailbox is on our relay: one ``fan`` reaches them all.

    Raises:
        LocalProtocolError: the relay's moderator keys were never fetched.
    """
    cache = link.relays.modkeys(None)
    cache.restore(book.ks.get("modkeys", modkeys_slot(None)))
    with contextlib.suppress(TransportError):
        await cache.ensure(link.transport(), now)
    try:
        return cache.current()
    except TransportError:
        raise LocalProtocolError(
            "the relay's moderator keys are not known yet (connect once first)"
        ) from None


def franked_evidence(
    modkeys: ModeratorKeyCache, gid: bytes, gpk: bytes, env: StoredEnvelope, msg: list[Any]
) -> ReportEvidence:
    """The report evidence of a franked text ``["ftext", msg, fk, kid, sigma]`` from ``gpk``
    once every check of §26.9 passed (``kid`` one our relay publishes, ``fc`` as delivered).

    Raises:
        GroupError: ``bad content`` or ``bad franking`` (dropped, nothing shown).
    """
    if len(msg) != 5:
        raise GroupError("bad content")
    _, content, fk, akid, sigma = msg
    if type(content) is not bytes or type(akid) is not int:
        raise GroupError("bad content")
    moderator = modkeys.lookup(akid)
    if moderator is None or env.fc is None:
        raise GroupError("bad franking")
    try:
        verify_group_text(gpk, gid, env.fc, content, fk, akid, sigma, moderator)
        open_group_content(content)
    except DecryptionError:
        raise GroupError("bad franking") from None
    return ReportEvidence(
        content, fk, env.fc, env.ft, env.fx, gpk, group_recipient(gid), akid, sigma
    )


def received_evidence(g: _Live, message_id: str) -> tuple[str, bytes]:
    """``(message id, report evidence)`` of a received group text (a unique prefix of its id
    in hex is enough).

    Raises:
        LocalProtocolError: no such received message, an ambiguous prefix, or one without
            evidence (received before revision 16, or a file: not reportable).
    """
    ref = message_id.strip().lower()
    found = [m for m in g.rec.msgs if ref and m[0].hex().startswith(ref) and m[1] != g.me]
    if len(found) != 1:
        raise LocalProtocolError(
            "no such received message" if not found else "that message id is ambiguous"
        )
    raw = g.rec.ev.get(found[0][0])
    if raw is None:
        raise LocalProtocolError("this message carries no report evidence: not reportable")
    return found[0][0].hex(), raw
