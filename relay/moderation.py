"""Abuse reports and their moderation (protocol.md §4.11, Part II §15.4).

Two audiences use this module; neither needs aiohttp:

* the WebSocket and HTTP handlers, through :class:`~relay.service.MailboxService`: a mailbox
  owner files a report (:meth:`ModerationService.file_report`), which is verified before
  anything is stored, and asks for its outcome (:meth:`ModerationService.report_status`);
* moderators, through the admin CLI and web page: :meth:`~ModerationService.list_reports`,
  :meth:`~ModerationService.get_report`, :meth:`~ModerationService.resolve`,
  :meth:`~ModerationService.unsuspend` and :meth:`~ModerationService.audit`.

Every state change appends to the append-only audit log in the same storage step as the
change (a report filed by a user appears with moderator ``"relay"``). Audit actions:
``report`` (filed), ``resolve:none``, ``resolve:revoke``, ``resolve:suspend`` and
``unsuspend``.

Moderators act on *sources*, never on people: ``revoke`` removes the capability hash the
reported envelope was accepted on from the reporter's pairwise mailbox (or bans the
requester handle on the reporter's contact address), so that sender can no longer reach
the reporter there; ``suspend`` suspends a contact address (every sender-side operation on
it is then answered ``AUTH`` like a deleted one) until an explicit ``unsuspend``.

The owners' two methods are a storage boundary (their storage errors reach callers as
:class:`~relay.errors.RelayError` with the wire code); on the moderators' side storage
failures propagate as :class:`relay.storage.base.StorageError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from clientlib.errors import WireError
from clientlib.wire.codec import decode_map
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import FileReport, GetReportStatus, ReportStatus
from clientlib.wire.limits import (
    MAILBOX_ID_SIZE,
    MAX_REPORTED_MESSAGE_SIZE,
    REPORT_ACTIONS,
    REPORT_ID_SIZE,
)
from relay.amf import verify_as_judge
from relay.blobs.reveals import FilesystemReveals
from relay.config import RelayConfig
from relay.errors import RelayError, storage_boundary, wire_code
from relay.franking import (
    SOURCE_CAPABILITY,
    SOURCE_HANDLE,
    SOURCE_NAMES,
    SOURCE_NONE,
    FrankingKeyring,
    commitment_over_hashes,
    parse_context,
    relay_tag,
    report_id,
)
from relay.metrics import Metrics
from relay.storage.base import (
    AuditRecord,
    ConsentStore,
    FrankingKeyStore,
    MailboxNotFound,
    MailboxRecord,
    MailboxStore,
    ModerationStore,
    ReportAlreadyResolved,
    ReportRecord,
    ReportResolution,
    StorageError,
    WrongKind,
)

__all__ = [
    "RELAY_MODERATOR",
    "AuditEntry",
    "ModerationError",
    "ModerationService",
    "ReportView",
]

#: The moderator name of audit entries the relay writes itself (a report filed by a user).
RELAY_MODERATOR: Final = "relay"
#: Longest moderator name and resolution note accepted.
MAX_MODERATOR_CHARS: Final = 64
MAX_RESOLUTION_NOTE_CHARS: Final = 4000
#: Most entries one listing returns.
MAX_LIST: Final = 1000
#: A moderator ban of a handle ignores the owner's ban quota.
_UNLIMITED: Final = 2**31


class ModerationError(Exception):
    """A moderator's request cannot be carried out; the message says why (it names no
    secret: report ids and send ids are the moderator's own input)."""


@dataclass(frozen=True, slots=True)
class ReportView:
    """A report as a moderator sees it.

    ``text`` and ``content_type`` are the ``text`` and ``t`` fields of the message when it
    decodes as a v1 content map (Part III §22.1), else None; ``msg`` is always the exact
    bytes under the commitment. ``attachments`` lists ``(SHA-256 hex, size)`` of the revealed
    attachment plaintexts; for a report filed by hash (``ath``, revision 8), of the committed
    ones, size -1 while one is not revealed yet. ``source_kind`` / ``source`` say what the
    relay accepted the envelope on (``capability``: the capability hash on the reporter's
    pairwise mailbox; ``handle``: the requester handle on the reporter's contact address;
    ``none``: an open mailbox). ``mailbox_sid`` is the reporter's mailbox (where the
    envelope was delivered).
    """

    id: str
    created: int
    reason: str
    note: str | None
    text: str | None
    content_type: str | None
    msg: bytes
    attachments: list[tuple[str, int]]
    sender_key: str
    recipient_key: str
    source_kind: str
    source: str
    mailbox_sid: str
    day: int
    kid: int
    verified: dict[str, str]
    status: str
    action: str | None
    moderator: str | None
    resolved_at: int | None
    resolution_note: str | None
    #: Per revealed attachment (same order): the image type its bytes start with
    #: (:func:`image_type`: shown, blurred, on the moderation page) or None (a download).
    attachment_types: list[str | None] = field(default_factory=list)

    @property
    def group(self) -> bool:
        """A report of a group message (protocol.md §26.9): the sender committed to the
        content type ``gmsg``; ``sender_key`` is its per-group key, ``recipient_key`` the
        group's AMF point, and the mailbox the reporter's group mailbox."""
        return self.content_type == GROUP_CONTENT_TYPE

    def __repr__(self) -> str:
        return f"ReportView(id={self.id}, status={self.status}, reason={self.reason})"


#: Image formats the moderation page shows inline, by their leading bytes (the reporter's
#: client names no type: the relay trusts only the bytes). Anything else is offered as a
#: download (``application/octet-stream``): never SVG, HTML or another active format.
_IMAGE_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _revealed_type(path: Path | None) -> str | None:
    if path is None:
        return None
    with path.open("rb") as fh:
        return image_type(fh.read(16))


def image_type(data: bytes) -> str | None:
    """``image/png``, ``image/jpeg``, ``image/gif`` or ``image/webp`` if ``data`` starts like
    one, else None."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the moderation audit log (``report_id`` in hex, or None)."""

    seq: int
    ts: int
    moderator: str
    action: str
    report_id: str | None
    detail: str


#: The content type a franked group text commits to (protocol.md §26.9).
GROUP_CONTENT_TYPE: Final = "gmsg"


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(msg: bytes) -> tuple[str | None, str | None]:
    """``(text, t)`` of a v1 content map, or ``(None, None)``."""
    try:
        _, fields = decode_map(msg, max_size=MAX_REPORTED_MESSAGE_SIZE)
    except WireError:
        return None, None
    t, text = fields.get("t"), fields.get("text")
    if t == "req":
        # A contact request (Part III §22.1): what the moderator needs is the requester's
        # self-chosen display name and its intro.
        name, intro = fields.get("name"), fields.get("intro")
        name = name if type(name) is str else None
        intro = intro if type(intro) is str else None
        text = (
            f"Contact request. Display name (chosen by the requester, unverified): "
            f"{name if name is not None else '(none)'}\n"
            f"Intro: {intro if intro is not None else '(none)'}"
        )
    return (text if type(text) is str else None), (t if type(t) is str else None)


def _view(rec: ReportRecord) -> ReportView:
    text, ctype = _content(rec.msg)
    res = rec.resolution
    return ReportView(
        id=rec.id.hex(),
        created=rec.created,
        reason=rec.reason,
        note=rec.note,
        text=text,
        content_type=ctype,
        msg=rec.msg,
        attachments=[(hashlib.sha256(a).hexdigest(), len(a)) for a in rec.attachments],
        attachment_types=[image_type(a) for a in rec.attachments],
        sender_key=rec.sender_key.hex(),
        recipient_key=rec.recipient_key.hex(),
        source_kind=SOURCE_NAMES.get(rec.source_kind, "none"),
        source=rec.source.hex(),
        mailbox_sid=rec.sid.hex(),
        day=rec.day,
        kid=rec.kid,
        verified={
            "commitment": "verified",
            "relay_tag": "verified",
            "sender": "AMF signature verified if filed to a revision-5 relay, which stores no "
            "report without it (protocol.md §15.5; the audit entry says so): the holder of the "
            "sender identity key made this message for the recipient identity key. It names a "
            "key, not a person; it convinces only this relay (whose key it needs), and a relay "
            "colluding with the recipient could have made it. A report stored by an older "
            "relay binds no sender",
            "mailbox": "the reporter owns the mailbox the envelope was delivered to",
            "key": f"kid {rec.kid}, within window",
            **(
                {
                    "group": "a message of a group (protocol.md §26.9): the sender key is the "
                    "sender's per-group key and the recipient key the group's point, not "
                    "identity keys; the relay tagged this copy for the reporter's group "
                    "mailbox. Revoking cuts the reporter's mailbox off from the whole group "
                    "(its members share one capability per epoch); the group's admins remove "
                    "the sender"
                }
                if ctype == GROUP_CONTENT_TYPE
                else {}
            ),
            **(
                {
                    "request": "a contact request to the reporter's address, accepted on the "
                    "handle shown; the display name and intro are the requester's own words, "
                    "and the handle is not verified to belong to the sender key"
                }
                if ctype == "req"
                else {}
            ),
            "verified_at": _iso(rec.verified_at),
        },
        status=rec.status,
        action=res.action if res is not None else None,
        moderator=res.moderator if res is not None else None,
        resolved_at=res.resolved_at if res is not None else None,
        resolution_note=res.note if res is not None else None,
    )


def _entry(rec: AuditRecord) -> AuditEntry:
    return AuditEntry(
        seq=rec.seq,
        ts=rec.ts,
        moderator=rec.moderator,
        action=rec.action,
        report_id=rec.report_id.hex() if rec.report_id else None,
        detail=rec.detail,
    )


def _parse_report_id(report_id: str) -> bytes | None:
    try:
        raw = bytes.fromhex(report_id.strip())
    except ValueError:
        return None
    return raw if len(raw) == REPORT_ID_SIZE else None


def _check_moderator(moderator: str) -> None:
    if (
        not moderator
        or len(moderator) > MAX_MODERATOR_CHARS
        or not moderator.isprintable()
        or moderator == RELAY_MODERATOR
    ):
        raise ModerationError(
            f"moderator must be a printable name of 1-{MAX_MODERATOR_CHARS} characters"
            f" (not {RELAY_MODERATOR!r})"
        )


def _check_note(note: str) -> None:
    if len(note) > MAX_RESOLUTION_NOTE_CHARS or "\x00" in note:
        raise ModerationError(
            f"note must be at most {MAX_RESOLUTION_NOTE_CHARS} characters without NUL"
        )


class ModerationBackend(ModerationStore, FrankingKeyStore, ConsentStore, MailboxStore, Protocol):
    """The concerns of a store the moderation service uses: reports and suspensions, franking
    keys, and (to act on a report) send-id resolution, capabilities and bans."""


class ModerationService:
    """Reports and their moderation over one store (shared by every relay process).

    Args:
        store: the relay's store (opened by the caller).
        config: the relay configuration (retention, report window, reports per day).
        clock: seconds since the epoch.
        keyring: the franking keys (default: a keyring of its own over ``store``).
        metrics: where to count reports (optional).
    """

    def __init__(
        self,
        store: ModerationBackend,
        config: RelayConfig,
        *,
        clock: Callable[[], float] = time.time,
        keyring: FrankingKeyring | None = None,
        metrics: Metrics | None = None,
        reveals: FilesystemReveals | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._clock = clock
        self.keyring = keyring or FrankingKeyring(store, config.store_limits())
        self._metrics = metrics
        #: Attachments revealed after a report filed with ``ath`` (protocol.md §5.9).
        self.reveals = reveals or FilesystemReveals(config.resolved_blob_dir() / "reports")

    def _now(self) -> int:
        return int(self._clock())

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("reports", outcome)

    # --- the reporter's side (owner operations) ------------------------------------------

    @storage_boundary
    async def file_report(self, cmd: FileReport, record: MailboxRecord) -> bytes:
        """Verify and store a ``report`` owner command of the owner of ``record``.

        Verification, in order (protocol.md §4.11): ``fx`` parses; its send id is the
        mailbox's; its key exists and is within its report window; ``ft`` recomputes; the
        commitment ``fc`` recomputes from ``fk``, ``snd``, ``rcp``, ``msg`` and the hashes of
        ``atts``; the envelope was not reported before; the mailbox has not filed
        ``reports_per_day`` reports today. Only a report that passes all of them is stored.
        Revision 5 (§15.5.8), after the commitment: the AMF key ``akid`` is within its
        window (else ``EXPIRED``) and ``amf`` verifies as judge for ``snd``, ``rcp``, ``fc``
        (else ``FRANKING``; a report without ``amf``/``akid`` is ``FRANKING`` too). The
        verdict, not the signature, is recorded (in the audit entry).

        Returns:
            The 16-byte report id, ``SHA-256(ft)[0:16]``.

        Raises:
            RelayError: ``FRANKING``, ``EXPIRED``, ``DUPLICATE``, ``QUOTA``,
                ``UNAVAILABLE``, ``STORAGE_FULL``.
        """
        now = self._now()
        ctx = parse_context(cmd.fx)
        if ctx is None or not hmac.compare_digest(ctx.sid, record.sid):
            self._count("franking")
            raise RelayError(ErrorCode.FRANKING)
        key = await self.keyring.verifying(ctx.kid, now)
        if key is None:
            self._count("expired")
            raise RelayError(ErrorCode.EXPIRED)
        atts = cmd.atts or ()
        # With ath (revision 8) the attachments are committed by hash and revealed later.
        hashes = cmd.ath if cmd.ath is not None else [hashlib.sha256(a).digest() for a in atts]
        fc = commitment_over_hashes(cmd.fk, cmd.snd, cmd.rcp, cmd.msg, hashes)
        if not hmac.compare_digest(relay_tag(key.secret, cmd.fc, cmd.fx), cmd.ft) or (
            not hmac.compare_digest(fc, cmd.fc)
        ):
            self._count("franking")
            raise RelayError(ErrorCode.FRANKING)
        # Revision 5 (§15.5.8): the sender binding. Without it a recipient could file a report
        # of a message it invented (issue 20, finding 1), so a report without one is refused.
        if cmd.amf is None or cmd.akid is None:
            self._count("franking")
            raise RelayError(ErrorCode.FRANKING)
        akey = key if cmd.akid == key.kid else await self.keyring.verifying(cmd.akid, now)
        if akey is None:
            self._count("expired")
            raise RelayError(ErrorCode.EXPIRED)
        if not verify_as_judge(
            self.keyring.judge(akey), cmd.snd, cmd.rcp, cmd.akid, cmd.fc, cmd.amf
        ):
            self._count("franking")
            raise RelayError(ErrorCode.FRANKING)
        rid = report_id(cmd.ft)
        report = ReportRecord(
            id=rid,
            created=now,
            reason=cmd.why,
            note=cmd.note,
            msg=cmd.msg,
            attachments=tuple(atts),
            sender_key=cmd.snd,
            recipient_key=cmd.rcp,
            sid=ctx.sid,
            kid=ctx.kid,
            day=ctx.day,
            source_kind=ctx.source_kind,
            source=ctx.source,
            verified_at=now,
        )
        audit = AuditRecord(
            ts=now,
            moderator=RELAY_MODERATOR,
            action="report",
            report_id=rid,
            detail=(
                f"report filed and verified (reason: {cmd.why}; sender binding: AMF "
                f"signature verified under key {cmd.akid})"
            ),
        )
        # A report by hash: its manifest first, so that the reveal can start as soon as the
        # report id is answered; removed again if the report is not stored (a duplicate's
        # manifest is the first report's and stays).
        manifest = cmd.ath is not None and await self.reveals.expect(rid, cmd.ath)
        try:
            await self.store.insert_report(report, audit, max_per_day=self.config.reports_per_day)
        except StorageError as exc:
            if manifest:
                await self.reveals.forget(rid)
            code = wire_code(exc)
            if code is not None:
                self._count(code.value.lower())
            raise
        self._count("accepted")
        return rid

    @storage_boundary
    async def report_status(
        self, request_id: int, cmd: GetReportStatus, record: MailboxRecord
    ) -> ReportStatus:
        """The outcome of report ``cmd.report``, for the mailbox that filed it only.

        Raises:
            RelayError: ``AUTH`` (no such report, or another mailbox filed it),
                ``UNAVAILABLE``.
        """
        rec = await self.store.get_report(cmd.report)
        if rec is None or not hmac.compare_digest(rec.sid, record.sid):
            raise RelayError(ErrorCode.AUTH)
        res = rec.resolution
        return ReportStatus(
            id=request_id,
            report=rec.id,
            status=rec.status,
            action=res.action if res is not None else None,
            ts=res.resolved_at if res is not None else rec.created,
        )

    # --- the moderators' side ------------------------------------------------------------

    async def list_reports(
        self, *, status: str | None = "open", limit: int = 100
    ) -> list[ReportView]:
        """Reports of ``status`` (``"open"``, ``"resolved"``, or None for all): open ones
        oldest first (the queue order), the others newest first; at most ``limit``
        (1..1000).

        Raises:
            ModerationError: an unknown status.
        """
        if status not in ("open", "resolved", None):
            raise ModerationError("status must be 'open', 'resolved' or None")
        limit = max(1, min(limit, MAX_LIST))
        return [_view(r) for r in await self.store.list_reports(status, limit)]

    async def get_report(self, report_id: str) -> ReportView | None:
        """The report with this id (32 hex digits), or None (also for a malformed id)."""
        raw = _parse_report_id(report_id)
        if raw is None:
            return None
        rec = await self.store.get_report(raw)
        if rec is None:
            return None
        view = _view(rec)
        revealed = await self.reveals.state(raw)
        if revealed is None:
            return view
        # Filed with ath: the committed hashes, and what was revealed of them so far.
        types = await asyncio.to_thread(
            lambda: [
                _revealed_type(self.reveals.path(raw, i)) if size is not None else None
                for i, (_, size) in enumerate(revealed)
            ]
        )
        return replace(
            view,
            attachments=[(h.hex(), -1 if size is None else size) for h, size in revealed],
            attachment_types=types,
        )

    async def attachment(self, report_id: str, index: int) -> bytes | Path | None:
        """The ``index``-th attachment plaintext the reporter revealed (verified under the
        franking commitment): its bytes (inline in the report) or its file (revealed by
        hash, streamed), or None."""
        raw = _parse_report_id(report_id)
        if raw is None:
            return None
        rec = await self.store.get_report(raw)
        if rec is None:
            return None
        if 0 <= index < len(rec.attachments):
            return rec.attachments[index]
        return self.reveals.path(raw, index) if 0 <= index < 16 else None

    async def resolve(
        self,
        report_id: str,
        *,
        action: str,
        moderator: str,
        note: str = "",
        suspend_sid: bytes | None = None,
    ) -> ReportView:
        """Resolve an open report with ``action``:

        * ``"none"``: close it, change nothing else;
        * ``"revoke"``: remove the capability hash the envelope was accepted on from the
          reporter's pairwise mailbox, or ban the requester handle on the reporter's contact
          address (source ``none``, an open mailbox, has nothing to revoke);
        * ``"suspend"``: suspend the mailbox (a contact address) with send id
          ``suspend_sid`` until :meth:`unsuspend`.

        The effect is applied first, then the report is resolved with its audit entry in
        one storage step; the reporter sees the outcome through ``rstat``.

        Raises:
            ModerationError: an unknown or malformed report id, a report already resolved,
                an unknown action, a bad moderator name or note, ``suspend_sid`` missing (for
                ``suspend``) or given (for another action) or unknown, nothing to revoke, or
                the reporter's mailbox no longer exists (for ``revoke``).
        """
        if action not in REPORT_ACTIONS:
            raise ModerationError(f"action must be one of {', '.join(REPORT_ACTIONS)}")
        _check_moderator(moderator)
        _check_note(note)
        if (action == "suspend") != (suspend_sid is not None):
            raise ModerationError("suspend_sid is required for 'suspend' and only for it")
        if suspend_sid is not None and len(suspend_sid) != MAILBOX_ID_SIZE:
            raise ModerationError(f"suspend_sid must be {MAILBOX_ID_SIZE} bytes")
        raw = _parse_report_id(report_id)
        rec = await self.store.get_report(raw) if raw is not None else None
        if raw is None or rec is None:
            raise ModerationError("no report has this id")
        if rec.resolution is not None:
            raise ModerationError("the report is already resolved")
        now = self._now()
        detail = await self._apply(action, rec, suspend_sid, now)
        if note:
            detail += f"; note: {note}"
        try:
            resolved = await self.store.resolve_report(
                raw,
                ReportResolution(action=action, moderator=moderator, resolved_at=now, note=note),
                AuditRecord(
                    ts=now,
                    moderator=moderator,
                    action=f"resolve:{action}",
                    report_id=raw,
                    detail=detail,
                ),
            )
        except ReportAlreadyResolved:
            raise ModerationError("the report was resolved concurrently") from None
        return _view(resolved)

    async def _apply(
        self, action: str, rec: ReportRecord, suspend_sid: bytes | None, now: int
    ) -> str:
        """Carry out ``action``'s effect; returns the audit detail."""
        if action == "none":
            return "closed without action"
        if action == "suspend":
            assert suspend_sid is not None
            if not await self.store.set_suspended(suspend_sid, True, now):
                raise ModerationError("no live mailbox has that send id")
            return f"suspended the contact address with send id {suspend_sid.hex()}"
        if rec.source_kind == SOURCE_NONE:
            raise ModerationError(
                "the envelope came to an open mailbox: there is no capability or handle to"
                " revoke (close with 'none', or suspend an address)"
            )
        rid = await self.store.resolve_sid(rec.sid, now)
        if rid is None:
            raise ModerationError(
                "the reporter's mailbox no longer exists: nothing to revoke (close with 'none')"
            )
        try:
            if rec.source_kind == SOURCE_CAPABILITY:
                await self.store.set_caps(rid, (), (rec.source,), self.config.max_caps, now)
                return "revoked the sender's capability on the reporter's pairwise mailbox"
            assert rec.source_kind == SOURCE_HANDLE
            await self.store.set_bans(rid, (rec.source,), (), _UNLIMITED, now)
            return "banned the requester's handle on the reporter's contact address"
        except (MailboxNotFound, WrongKind):
            raise ModerationError(
                "the reporter's mailbox no longer exists: nothing to revoke (close with 'none')"
            ) from None

    async def unsuspend(self, sid: bytes, *, moderator: str, note: str = "") -> None:
        """Lift the suspension of the mailbox with send id ``sid`` (audited).

        Raises:
            ModerationError: a malformed send id, no such live mailbox, or a bad moderator
                name or note.
        """
        _check_moderator(moderator)
        _check_note(note)
        if len(sid) != MAILBOX_ID_SIZE:
            raise ModerationError(f"sid must be {MAILBOX_ID_SIZE} bytes")
        now = self._now()
        if not await self.store.set_suspended(sid, False, now):
            raise ModerationError("no live mailbox has that send id")
        detail = f"lifted the suspension of the contact address with send id {sid.hex()}"
        await self.store.append_audit(
            AuditRecord(
                ts=now,
                moderator=moderator,
                action="unsuspend",
                report_id=None,
                detail=detail + (f"; note: {note}" if note else ""),
            )
        )

    async def audit(self, *, limit: int = 100) -> list[AuditEntry]:
        """The latest audit entries, newest first (at most ``limit``, 1..1000)."""
        limit = max(1, min(limit, MAX_LIST))
        return [_entry(r) for r in await self.store.list_audit(limit)]
