"""The HTTP fallback transport for clients that cannot keep a socket open (protocol.md §2.1).

Every call is one or two stateless POSTs: owner operations fetch a challenge from
``/v1/challenge`` and then post the signed command to ``/v1/owner``; deposits go to
``/v1/deposit``, prekey bundle requests to ``/v1/bundle``, boundary and proof-of-work nonce
requests to ``/v1/boundaries`` and ``/v1/pow``. Bodies are frames with content
type ``application/x-blindrelay``. There are no pushes: the owner polls with
:meth:`HTTPTransport.fetch`, which also acknowledges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.transport.base import (
    MailboxCredential,
    SignFn,
    check_report_id,
    create_fields,
    deposit_fields,
    id_list,
    prekey_chunks,
    report_fields,
)
from clientlib.wire import (
    CAPABILITY_HASH_SIZE,
    ENVELOPE_ID_SIZE,
    HANDLE_SIZE,
    KIND_OPEN,
    MAILBOX_ID_SIZE,
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    MAX_RELAY_FRAME_SIZE,
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_DELETE,
    OP_FETCH,
    OP_INFO,
    OP_PREKEYS,
    OP_REPORT,
    OP_REPORT_STATUS,
    SUPPORTED_VERSIONS,
    Boundaries,
    BoundariesIssued,
    BundleIssued,
    ChallengeIssued,
    ClientFrame,
    Deposit,
    EnvelopesFetched,
    ErrorReply,
    FetchBundle,
    GetBoundaries,
    GetPow,
    MailboxCreated,
    MailboxInfo,
    Ok,
    OwnerCommand,
    PowIssued,
    PreKeysStored,
    RelayFrame,
    ReportAccepted,
    ReportStatus,
    RequestChallenge,
    SignedOwnerCommand,
    StoredEnvelope,
    decode_relay_frame,
)
from clientlib.wire.limits import MAX_ACK_BATCH, MAX_FETCH_BATCH, MAX_REQUEST_ID

__all__ = ["CONTENT_TYPE", "HTTPTransport"]

#: The content type of every request and reply body.
CONTENT_TYPE = "application/x-blindrelay"


class HTTPTransport:
    """Stateless request/reply access to a relay over HTTP.

    Args:
        session: the aiohttp session to use.
        base_url: the relay's base URL (``http(s)://host:port``).
        request_timeout: seconds one call may take (all its round trips together).
        version: the frame version to send (byte 0); the path carries the major version.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        request_timeout: float = 10.0,
        version: int = SUPPORTED_VERSIONS.max,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._version = version
        self._ids = itertools.count(1)

    async def create_mailbox(
        self,
        owner_key: bytes,
        sign: SignFn,
        *,
        kind: str = KIND_OPEN,
        boundaries: Boundaries | None = None,
    ) -> tuple[bytes, bytes]:
        """Create a mailbox owned by ``owner_key`` (proof of possession by ``sign``).

        Args:
            owner_key: the new mailbox's Ed25519 owner key.
            sign: signs the command with that key.
            kind: ``"open"`` (anyone with the send id may deposit), ``"pair"`` (deposits need
                a registered send capability, :meth:`set_caps`) or ``"addr"`` (a contact
                address: deposits are contact requests within ``boundaries``), protocol.md
                §4.8.
            boundaries: for ``"addr"`` only; the relay's defaults if None.

        Returns:
            ``(rid, sid)``.

        Raises:
            LocalProtocolError: an unknown kind, or boundaries for another kind.
            RelayRejected: the relay refused (``MALFORMED`` invalid key, or a relay before
                revision 3 for kinds other than open; ``AUTH``).
            TransportError: the relay could not be reached or answered nonsense.
        """
        fields = create_fields(kind, boundaries)
        reply = await self._owner(OP_CREATE, None, sign, key=owner_key, **fields)
        if not isinstance(reply, MailboxCreated):
            raise TransportError("the relay sent an unexpected reply")
        return reply.rid, reply.sid

    async def delete_mailbox(self, cred: MailboxCredential) -> None:
        """Delete the mailbox and everything it holds.

        Raises:
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        reply = await self._owner(OP_DELETE, cred.rid, cred.sign)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def fetch(
        self, cred: MailboxCredential, *, ack: Iterable[int] = (), max: int = 64
    ) -> tuple[tuple[StoredEnvelope, ...], bool]:
        """Acknowledge ``ack``, then peek at up to ``max`` of the oldest envelopes.

        Fetched envelopes stay stored until a later fetch acknowledges their ``seq``.

        Returns:
            ``(envelopes, more)``; ``more`` is true when further envelopes are waiting.

        Raises:
            LocalProtocolError: more than 256 acks or ``max`` outside ``0..256``.
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        acks = tuple(sorted({s for s in ack if s > 0}))
        if len(acks) > MAX_ACK_BATCH:
            raise LocalProtocolError("at most 256 acks per fetch")
        if not 0 <= max <= MAX_FETCH_BATCH:
            raise LocalProtocolError("max must be within 0..256")
        reply = await self._owner(OP_FETCH, cred.rid, cred.sign, ack=acks or None, max=max)
        if not isinstance(reply, EnvelopesFetched):
            raise TransportError("the relay sent an unexpected reply")
        return reply.envs, bool(reply.more)

    async def deposit(
        self,
        sid: bytes,
        ct: bytes,
        *,
        eid: bytes,
        flags: int = 0,
        fc: bytes | None = None,
        cap: bytes | None = None,
        hdl: bytes | None = None,
        att: Sequence[bytes] = (),
        pow: tuple[bytes, int] | None = None,
    ) -> None:
        """Deposit one envelope; returns once the relay has stored it.

        Args:
            sid: the destination mailbox's send id.
            ct: the ciphertext, already padded to an envelope bucket.
            eid: 16 random bytes chosen by the caller; reuse them when retrying.
            flags: envelope flags (``FLAG_ONLINE_ONLY``).
            fc: optional 32-byte franking commitment.
            cap: the 32-byte send capability a pairwise mailbox requires (protocol.md §4.8).
            hdl: the 16-byte requester handle a contact address requires (§4.9).
            att: attachment ids (16 bytes each, at most 16) the envelope references.
            pow: ``(nonce, counter)``: a proof of work for a contact address that asks for
                one (:meth:`pow_challenge`, then :func:`clientlib.wire.solve`). A retry after
                a lost reply needs a fresh nonce (the first one was consumed) but the same
                ``eid``.

        Raises:
            LocalProtocolError: a field has the wrong length.
            RelayRejected: the relay refused (``AUTH`` unknown sid or capability, banned
                handle; ``BOUNDARY``; ``POW``; ``QUOTA``, ...).
            TransportError: no reply in time or the relay is unreachable (retry with ``eid``).
        """
        _check_id(sid, "sid")
        if len(eid) != ENVELOPE_ID_SIZE:
            raise LocalProtocolError("eid must be 16 bytes")
        extra = deposit_fields(cap, hdl, att, pow)
        frame = Deposit(id=self._next_id(), sid=sid, eid=eid, flags=flags, ct=ct, fc=fc, **extra)
        reply = await self._post("/v1/deposit", frame)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def set_caps(
        self,
        cred: MailboxCredential,
        *,
        add: Sequence[bytes] = (),
        remove: Sequence[bytes] = (),
    ) -> None:
        """Register and revoke send capabilities of a pairwise mailbox (protocol.md §4.8).

        Takes capability *hashes* (:func:`clientlib.wire.capability_hash`), never the
        capabilities; ``remove`` applies before ``add``. Revoking blocks that contact at the
        relay; adding the same hash again unblocks it.

        Raises:
            LocalProtocolError: more than 64 hashes in ``add`` or ``remove``, or not 32 bytes.
            RelayRejected: ``QUOTA`` (more than the relay's ``max_caps``; nothing changed),
                ``MALFORMED`` (not a pairwise mailbox, or a relay before revision 3),
                ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        added = id_list(add, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        removed = id_list(remove, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        reply = await self._owner(OP_CAPS, cred.rid, cred.sign, add=added, remove=removed)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def set_boundaries(self, cred: MailboxCredential, boundaries: Boundaries) -> None:
        """Replace the boundaries of a contact address (protocol.md §4.9).

        Raises:
            RelayRejected: ``MALFORMED`` (not a contact address, or a relay before revision
                3), ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        reply = await self._owner(OP_BOUNDARIES, cred.rid, cred.sign, bnd=boundaries)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def ban(
        self,
        cred: MailboxCredential,
        *,
        add: Sequence[bytes] = (),
        remove: Sequence[bytes] = (),
    ) -> None:
        """Ban (``add``) and unban (``remove``, applied first) requester handles of a contact
        address (protocol.md §4.9): the relay refuses their requests with ``AUTH``.

        Raises:
            LocalProtocolError: more than 64 handles in ``add`` or ``remove``, or not 16 bytes.
            RelayRejected: ``QUOTA`` (more than the relay's ``max_bans``; nothing changed),
                ``MALFORMED`` (not a contact address, or a relay before revision 3),
                ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        banned = id_list(add, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        unbanned = id_list(remove, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        reply = await self._owner(OP_BAN, cred.rid, cred.sign, hdl=banned, unban=unbanned)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def mailbox_info(self, cred: MailboxCredential) -> MailboxInfo:
        """Everything the relay keeps for the mailbox (protocol.md §4.10).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay
                before revision 3).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        reply = await self._owner(OP_INFO, cred.rid, cred.sign)
        if not isinstance(reply, MailboxInfo):
            raise TransportError("the relay sent an unexpected reply")
        return reply

    async def report(
        self,
        cred: MailboxCredential,
        *,
        msg: bytes,
        fk: bytes,
        fc: bytes,
        ft: bytes,
        fx: bytes,
        sender: bytes,
        recipient: bytes,
        attachments: Sequence[bytes] = (),
        reason: str,
        note: str | None = None,
    ) -> bytes:
        """Report an abusive message delivered to ``cred``'s mailbox (protocol.md §4.11).

        The relay verifies its franking tag and the sender's commitment, then stores the
        report for its moderators. Reporting reveals the message, its attachments and both
        identity keys to the relay operator.

        Args:
            cred: the mailbox the envelope was delivered to (only its owner may report it).
            msg: the exact content bytes under the commitment (``MessageReceived.plaintext``).
            fk: the message's franking key (``MessageReceived.franking_key``).
            fc: the franking commitment delivered with the envelope.
            ft: the relay's franking tag delivered with it (``StoredEnvelope.ft``).
            fx: the tag's context delivered with it (``StoredEnvelope.fx``).
            sender: the sender's 32-byte identity key.
            recipient: our 32-byte identity key (the recipient under the commitment).
            attachments: the attachment plaintexts, in the order of their hashes.
            reason: one of ``clientlib.wire.REPORT_REASONS``.
            note: an optional note for the moderator (at most 1,000 bytes of UTF-8).

        Returns:
            The 16-byte report id (ask its outcome with :meth:`report_status`).

        Raises:
            LocalProtocolError: a field has the wrong length or the report is too large.
            RelayRejected: ``FRANKING`` (the tag, its context or the commitment does not
                verify, or the envelope was delivered to another mailbox), ``EXPIRED`` (the
                relay's franking key is past its report window), ``DUPLICATE`` (reported
                before), ``QUOTA`` (this mailbox's daily report allowance is used up),
                ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay before
                revision 4).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        fields = report_fields(
            msg=msg,
            fk=fk,
            fc=fc,
            ft=ft,
            fx=fx,
            sender=sender,
            recipient=recipient,
            attachments=attachments,
            reason=reason,
            note=note,
        )
        reply = await self._owner(OP_REPORT, cred.rid, cred.sign, **fields)
        if not isinstance(reply, ReportAccepted):
            raise TransportError("the relay sent an unexpected reply")
        return reply.report

    async def report_status(self, cred: MailboxCredential, report_id: bytes) -> ReportStatus:
        """The state of a report this mailbox filed: ``status`` (``open``/``resolved``),
        ``action`` (``none``/``revoke``/``suspend`` once resolved) and ``ts``.

        Raises:
            LocalProtocolError: ``report_id`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key, or no report with that id
                filed by this mailbox), ``MALFORMED`` (a relay before revision 4).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        check_report_id(report_id)
        reply = await self._owner(OP_REPORT_STATUS, cred.rid, cred.sign, report=report_id)
        if not isinstance(reply, ReportStatus):
            raise TransportError("the relay sent an unexpected reply")
        return reply

    async def boundaries(self, sid: bytes) -> Boundaries:
        """The boundaries of the contact address with send id ``sid`` (protocol.md §4.9).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address),
                ``MALFORMED`` (a relay before revision 3).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(sid, "sid")
        reply = await self._post("/v1/boundaries", GetBoundaries(id=self._next_id(), sid=sid))
        if not isinstance(reply, BoundariesIssued):
            raise TransportError("the relay sent an unexpected reply")
        return reply.bnd

    async def pow_challenge(self, sid: bytes) -> PowIssued:
        """A single-use proof-of-work nonce for a request to the contact address ``sid``.

        Solve it with :func:`clientlib.wire.solve` (``reply.bits`` leading zero bits, in a
        thread) before ``reply.exp`` and pass ``pow=(reply.nonce, counter)`` to
        :meth:`deposit`. With ``reply.bits == 0`` the address asks for no work.

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address), ``LIMIT``,
                ``MALFORMED`` (a relay before revision 3).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(sid, "sid")
        reply = await self._post("/v1/pow", GetPow(id=self._next_id(), sid=sid))
        if not isinstance(reply, PowIssued):
            raise TransportError("the relay sent an unexpected reply")
        return reply

    async def put_prekeys(
        self,
        cred: MailboxCredential,
        *,
        static: bytes | None = None,
        one_time: Sequence[bytes] = (),
        replace: bool = False,
    ) -> tuple[int, bool]:
        """Upload prekey material of ``cred``'s mailbox (protocol.md §4.7), or ask its status.

        The relay stores the blobs as they are (encrypt them first: it must learn nothing).
        ``one_time`` is sent in ``keys`` commands of at most 32 items; the first one carries
        ``static`` (replacing the stored static part) and ``replace`` (deleting every stored
        one-time item first). Each command is applied atomically; if a later one fails, the
        earlier ones stay applied. With nothing to upload this is a status query.

        Returns:
            ``(left, has_static)`` from the last reply: one-time items the relay now holds,
            and whether it holds a static part.

        Raises:
            LocalProtocolError: a blob is empty or too large.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``QUOTA`` (the relay would
                hold more one-time items than it allows; that command changed nothing),
                ``MALFORMED`` (a relay that predates prekey hosting), ``TOO_LARGE`` (the
                relay's frame limit is below a full upload).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        result = (0, False)
        for chunk_static, otk, chunk_replace in prekey_chunks(static, one_time, replace):
            reply = await self._owner(
                OP_PREKEYS, cred.rid, cred.sign, static=chunk_static, otk=otk, replace=chunk_replace
            )
            if not isinstance(reply, PreKeysStored):
                raise TransportError("the relay sent an unexpected reply")
            result = (reply.left, bool(reply.static))
        return result

    async def fetch_bundle(self, sid: bytes) -> tuple[bytes, bytes | None]:
        """Fetch the prekey bundle of the mailbox with send id ``sid``.

        The relay hands out one one-time item at most once: the item returned is consumed.

        Returns:
            ``(static, one_time)``; ``one_time`` is None when the mailbox has none left or
            its hourly allowance is used up (fall back to the last-resort key).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or it has uploaded no static part),
                ``MALFORMED`` (a relay that predates prekey hosting).
            TransportError: the relay could not be reached or answered nonsense (a retry
                may consume another item).
        """
        _check_id(sid, "sid")
        reply = await self._post("/v1/bundle", FetchBundle(id=self._next_id(), sid=sid))
        if not isinstance(reply, BundleIssued):
            raise TransportError("the relay sent an unexpected reply")
        return reply.static, reply.otk

    # --- internals ------------------------------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids) & MAX_REQUEST_ID

    async def _owner(self, op: str, rid: bytes | None, sign: SignFn, **fields: Any) -> RelayFrame:
        """Get a challenge, then post the signed owner command (``fields``: its other fields)."""
        chal = await self._post(
            "/v1/challenge", RequestChallenge(id=self._next_id(), op=op, rid=rid)
        )
        if not isinstance(chal, ChallengeIssued):
            raise TransportError("the relay sent an unexpected reply")
        cmd = OwnerCommand(op=op, nonce=chal.nonce, rid=rid, **fields).encode(self._version)
        frame = SignedOwnerCommand(id=self._next_id(), cmd=cmd, sig=sign(cmd))
        return await self._post("/v1/owner", frame)

    async def _post(self, path: str, frame: ClientFrame) -> RelayFrame:
        """POST one frame and decode the reply frame.

        Raises:
            RelayRejected: the reply is an ``err`` frame.
            TransportError: network failure, timeout, or an undecodable reply.
        """
        body = frame.encode(self._version)
        try:
            async with self._session.post(
                self._base + path,
                data=body,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=self._timeout,
            ) as resp:
                data = await resp.content.read(MAX_RELAY_FRAME_SIZE + 1)
                status = resp.status
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError("could not reach the relay") from exc
        try:
            _, reply = decode_relay_frame(data)
        except WireError:
            if status != 200:
                raise TransportError(f"the relay answered HTTP {status}") from None
            raise TransportError("the relay sent an undecodable reply") from None
        if isinstance(reply, ErrorReply):
            raise RelayRejected(reply.code)
        if status != 200:
            raise TransportError(f"the relay answered HTTP {status}")
        if getattr(reply, "id", None) != getattr(frame, "id", None):
            raise TransportError("the relay answered another request")
        return reply


def _check_id(value: bytes, name: str) -> None:
    if len(value) != MAILBOX_ID_SIZE:
        raise LocalProtocolError(f"{name} must be {MAILBOX_ID_SIZE} bytes")
