"""The relay API both transports share (protocol.md §4), written once over two primitives.

:class:`RelayAPI` owns every operation that HTTP and WebSocket have in common: its
signature, its docstring, the checks of its fields (nothing invalid leaves the client) and
the check of the reply type. A transport supplies only how a frame travels:

- :meth:`RelayAPI._request`: send one client frame, return its reply frame (a plain
  request: deposits, boundary, proof-of-work nonce and bundle requests);
- :meth:`RelayAPI._owner_request`: get a challenge for an owner operation, sign the owner
  command over it and send it, return the reply (protocol.md §4.2). Both round trips must
  use the same connection where challenges are bound to one (WebSocket), which is why this
  is a primitive of its own; :func:`owner_exchange` is the one implementation of the
  exchange, over a transport's per-connection request function.

Errors are the same everywhere: :class:`~clientlib.errors.LocalProtocolError` for a field
the relay would refuse (raised before anything is sent, so nothing changes),
:class:`~clientlib.errors.RelayRejected` with the relay's wire code (protocol.md §5) for an
``err`` reply, and :class:`~clientlib.errors.TransportError` when the relay could not be
reached in time, the connection dropped, or the reply was not the one expected.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from clientlib.errors import LocalProtocolError, TransportError
from clientlib.transport.base import (
    MailboxCredential,
    SignFn,
    check_id,
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
    MAX_BANS_PER_COMMAND,
    MAX_CAPS_PER_COMMAND,
    MAX_FANOUT,
    MAX_PUSH_URL_BYTES,
    OP_BAN,
    OP_BOUNDARIES,
    OP_CAPS,
    OP_CREATE,
    OP_DELEGATED_CAPS,
    OP_DELETE,
    OP_INFO,
    OP_PREKEYS,
    OP_PUSH,
    OP_REPORT,
    OP_REPORT_STATUS,
    OP_UNPUSH,
    PUSH_TOKEN_SIZE,
    Boundaries,
    BoundariesIssued,
    BundleIssued,
    ChallengeIssued,
    ClientFrame,
    Deposit,
    Fanout,
    FanoutDone,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    MailboxCreated,
    MailboxInfo,
    ModerationKeys,
    Ok,
    OwnerCommand,
    PowIssued,
    PreKeysStored,
    Recall,
    RelayFrame,
    ReportAccepted,
    ReportStatus,
    RequestChallenge,
    SignedOwnerCommand,
)
from clientlib.wire.limits import RECALL_SECRET_SIZE

__all__ = ["Call", "FrameBuilder", "RelayAPI", "expect", "owner_exchange"]

_F = TypeVar("_F", bound=RelayFrame)

#: Builds a client frame around the request id the transport picked for it.
FrameBuilder = Callable[[int], ClientFrame]
#: Sends one frame on one connection and returns its reply (``err`` replies raise).
Call = Callable[[FrameBuilder], Awaitable[RelayFrame]]


def expect(reply: RelayFrame, cls: type[_F]) -> _F:
    """Check the type of a reply.

    Raises:
        TransportError: ``reply`` is not a ``cls`` (the relay answered nonsense).
    """
    if not isinstance(reply, cls):
        raise TransportError("the relay sent an unexpected reply")
    return reply


async def owner_exchange(
    call: Call, version: int, op: str, rid: bytes | None, sign: SignFn, **fields: Any
) -> RelayFrame:
    """Get a challenge, then send the signed owner command (``fields``: its other fields).

    Args:
        call: sends one frame on the connection both round trips use.
        version: the frame version of that connection (the command is encoded with it).
        op, rid: the operation and its mailbox (None for ``create``), bound by the challenge.
        sign: signs the encoded command (protocol.md §4.2).

    Raises:
        RelayRejected: either round trip was refused (``LIMIT`` too many challenges,
            ``AUTH``, ...).
        TransportError: the challenge reply was not a challenge, or the relay could not be
            reached.
    """
    chal = expect(await call(lambda i: RequestChallenge(id=i, op=op, rid=rid)), ChallengeIssued)
    # dcaps (protocol.md §26.2) names its mailbox by send id: the challenge binds that id.
    body_rid = None if "sid" in fields else rid
    cmd = OwnerCommand(op=op, nonce=chal.nonce, rid=body_rid, **fields).encode(version)
    sig = sign(cmd)
    return await call(lambda i: SignedOwnerCommand(id=i, cmd=cmd, sig=sig))


class RelayAPI(abc.ABC):
    """The operations of protocol.md §4 that every transport offers.

    Subclasses implement :meth:`_request` and :meth:`_owner_request`; everything else,
    including the field checks and the reply checks, lives here once.
    """

    __slots__ = ()

    # --- primitives -----------------------------------------------------------------------

    @abc.abstractmethod
    async def _request(self, build: FrameBuilder) -> RelayFrame:
        """Send the frame ``build(request_id)`` and return its reply frame.

        Raises:
            LocalProtocolError: the frame exceeds a limit the relay announced.
            RelayRejected: the reply is an ``err`` frame (its wire code).
            TransportError: the relay could not be reached in time, or the connection
                dropped before the reply.
        """

    @abc.abstractmethod
    async def _owner_request(
        self, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        """Run one owner command (a challenge, then the signed command; see
        :func:`owner_exchange`) and return its reply frame.

        Raises:
            LocalProtocolError: a frame exceeds a limit the relay announced.
            RelayRejected: the challenge or the command was refused (its wire code).
            TransportError: the relay could not be reached in time, or the connection
                dropped before the reply.
        """

    def _mailbox_deleted(self, rid: bytes) -> None:
        """Hook: the relay confirmed the deletion of mailbox ``rid`` (forget its state)."""
        return  # nothing to forget for a stateless transport

    async def _owner_call(
        self, cred: MailboxCredential, op: str, reply_type: type[_F], **fields: Any
    ) -> _F:
        """Run one owner command on ``cred``'s mailbox and expect a ``reply_type`` reply."""
        check_id(cred.rid, "rid")
        return expect(await self._owner_request(op, cred.rid, cred.sign, **fields), reply_type)

    # --- mailboxes ------------------------------------------------------------------------

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
            ``(rid, sid)``: the receive id (keep it secret) and the send id (for senders).

        Raises:
            LocalProtocolError: an unknown kind, or boundaries for another kind.
            RelayRejected: the relay refused (``MALFORMED`` for an invalid key, or a relay
                before revision 3 for kinds other than open; ``AUTH``; ``LIMIT``).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        fields = create_fields(kind, boundaries)
        reply = await self._owner_request(OP_CREATE, None, sign, key=owner_key, **fields)
        created = expect(reply, MailboxCreated)
        return created.rid, created.sid

    async def delete_mailbox(self, cred: MailboxCredential) -> None:
        """Delete the mailbox with everything it holds; its ids become unknown (``AUTH``).

        Raises:
            LocalProtocolError: ``cred.rid`` is not 16 bytes.
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        await self._owner_call(cred, OP_DELETE, Ok)
        self._mailbox_deleted(cred.rid)

    async def mailbox_info(self, cred: MailboxCredential) -> MailboxInfo:
        """Everything the relay keeps for the mailbox (protocol.md §4.10).

        Raises:
            LocalProtocolError: ``cred.rid`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay
                before revision 3).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        return await self._owner_call(cred, OP_INFO, MailboxInfo)

    # --- deposits -------------------------------------------------------------------------

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
        ttl: int | None = None,
        rc: bytes | None = None,
    ) -> None:
        """Deposit one envelope; returns once the relay has stored it (or pushed it, for
        online-only envelopes on a WebSocket).

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
            ttl: the envelope's own lifetime at the relay, in seconds (1 to 2^32 - 1; the
                relay keeps it for the smaller of this and its envelope TTL; protocol.md
                §5.7); for disappearing messages. Relays before revision 14 refuse the
                field (``MALFORMED``).
            rc: the 32-byte recall hash (:func:`clientlib.wire.recall_hash` of a secret the
                caller keeps; protocol.md §5.10): :meth:`recall` with the secret deletes the
                envelope while it is undelivered. Relays before revision 15 refuse the field
                (``MALFORMED``).

        Raises:
            LocalProtocolError: a field has the wrong length, ``ttl`` is out of range, or
                (WebSocket) ``ct`` is larger than the envelope limit the relay announced.
            RelayRejected: the relay refused (``AUTH`` unknown sid or capability, banned
                handle; ``BOUNDARY``; ``POW``; ``QUOTA``; ``LIMIT``; ``MALFORMED`` not an
                envelope bucket; ``TOO_LARGE``, ...).
            TransportError: no reply in time, the connection dropped or the relay is
                unreachable (retry with the same ``eid``).
        """
        check_id(sid, "sid")
        if len(eid) != ENVELOPE_ID_SIZE:
            raise LocalProtocolError("eid must be 16 bytes")
        extra = deposit_fields(cap, hdl, att, pow)
        if ttl is not None:
            if type(ttl) is not int or not 1 <= ttl < 2**32:
                raise LocalProtocolError("ttl must be 1 to 2**32 - 1 seconds")
            extra["ttl"] = ttl
        if rc is not None:
            if len(rc) != RECALL_SECRET_SIZE:
                raise LocalProtocolError("rc must be 32 bytes")
            extra["rc"] = rc
        reply = await self._request(
            lambda i: Deposit(id=i, sid=sid, eid=eid, flags=flags, ct=ct, fc=fc, **extra)
        )
        expect(reply, Ok)

    async def recall(self, sid: bytes, eid: bytes, rs: bytes) -> None:
        """Ask the relay to delete envelope ``eid`` of mailbox ``sid`` if it is still
        undelivered and was deposited with ``rc = recall_hash(rs)`` (protocol.md §5.10).

        The relay answers the same whether or not anything was deleted: this returns once
        it has done what it could, and says nothing about the envelope.

        Raises:
            LocalProtocolError: a field has the wrong length.
            RelayRejected: ``MALFORMED`` (a relay before revision 15), ``LIMIT``, ...
            TransportError: no reply in time (a retry is harmless).
        """
        check_id(sid, "sid")
        if len(eid) != ENVELOPE_ID_SIZE or len(rs) != RECALL_SECRET_SIZE:
            raise LocalProtocolError("a recall takes a 16-byte eid and a 32-byte secret")
        reply = await self._request(lambda i: Recall(id=i, sid=sid, eid=eid, rs=rs))
        expect(reply, Ok)

    async def fanout(
        self,
        to: Sequence[tuple[bytes, bytes]],
        ct: bytes,
        *,
        eid: bytes,
        flags: int = 0,
        fc: bytes | None = None,
    ) -> tuple[int, dict[int, str]]:
        """One envelope to many group mailboxes in one upload (protocol.md §26.1).

        Args:
            to: ``(sid, cap)`` of each destination ``pair`` mailbox, at most 1,000, no send
                id twice.
            ct: the ciphertext (an envelope bucket of at most 32 KiB), the same for all.
            eid: 16 random bytes; reuse them when retrying (each mailbox dedupes by eid).

        Returns:
            ``(stored, refused)``: how many entries hold the envelope now (a retry counts
            the ones stored before), and the refused entries' indexes with their codes
            (``AUTH``: unknown, revoked or suspended; ``QUOTA``; ``UNAVAILABLE`` ...).

        Raises:
            LocalProtocolError: a field has the wrong length, a send id twice, too many.
            RelayRejected: the whole frame was refused (``MALFORMED``, ``TOO_LARGE``, ...).
            TransportError: no reply in time (retry with the same ``eid``).
        """
        if not 1 <= len(to) <= MAX_FANOUT:
            raise LocalProtocolError("a fan-out needs 1 to 1,000 entries")
        if len(eid) != ENVELOPE_ID_SIZE:
            raise LocalProtocolError("eid must be 16 bytes")
        if len({sid for sid, _ in to}) != len(to):
            raise LocalProtocolError("a send id appears twice")
        packed = bytearray()
        for sid, cap in to:
            check_id(sid, "sid")
            if len(cap) != CAPABILITY_HASH_SIZE:
                raise LocalProtocolError("capabilities are 32 bytes")
            packed += sid + cap
        reply = await self._request(
            lambda i: Fanout(id=i, eid=eid, flags=flags, ct=ct, to=bytes(packed), fc=fc)
        )
        done = expect(reply, FanoutDone)
        return done.n, {r.i: r.e for r in done.bad}

    async def delegated_caps(
        self,
        sid: bytes,
        key: bytes,
        sign: SignFn,
        *,
        add: Sequence[bytes] = (),
        remove: Sequence[bytes] = (),
    ) -> None:
        """Replace capability hashes of someone else's ``pair`` mailbox as its delegate
        (protocol.md §26.2): ``key`` (signing with ``sign``) must be registered there as a
        delegate hash (:func:`clientlib.wire.delegate_hash`); ``remove`` applies first.

        Raises:
            LocalProtocolError: more than 64 hashes in ``add`` or ``remove``, or not 32 bytes.
            RelayRejected: ``AUTH`` (no such mailbox, or ``key`` is not its delegate),
                ``QUOTA`` (more than ``max_caps``; nothing changed).
            TransportError: the relay could not be reached in time.
        """
        check_id(sid, "sid")
        added = id_list(add, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        removed = id_list(remove, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        reply = await self._owner_request(
            OP_DELEGATED_CAPS, sid, sign, sid=sid, key=key, add=added, remove=removed
        )
        expect(reply, Ok)

    # --- push wake-ups (protocol.md §28) -------------------------------------------------

    async def set_push(self, cred: MailboxCredential, url: str, token: bytes) -> None:
        """Register (replacing any) the push endpoint ``url`` of a mailbox: when an envelope
        is stored and no owner is connected, the relay POSTs ``token`` (32 bytes, the whole
        body) there (protocol.md §28.1).

        Raises:
            LocalProtocolError: ``token`` is not 32 bytes, or ``url`` is longer than 512
                bytes or not http(s).
            RelayRejected: ``MALFORMED`` (an endpoint this relay will not POST to: not
                https, user information, a private address literal; or a relay before
                revision 12), ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached in time.
        """
        if len(token) != PUSH_TOKEN_SIZE:
            raise LocalProtocolError("a push token is 32 bytes")
        if len(url.encode()) > MAX_PUSH_URL_BYTES or not url.startswith(("https://", "http://")):
            raise LocalProtocolError("a push endpoint is an http(s) URL of at most 512 bytes")
        await self._owner_call(cred, OP_PUSH, Ok, url=url, tok=token)

    async def clear_push(self, cred: MailboxCredential) -> None:
        """Forget the push endpoint of a mailbox, if it has one (protocol.md §28.1).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``MALFORMED`` (a relay
                before revision 12).
            TransportError: the relay could not be reached in time.
        """
        await self._owner_call(cred, OP_UNPUSH, Ok)

    # --- consent (protocol.md §4.8-§4.9) --------------------------------------------------

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
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(cred.rid, "rid")
        added = id_list(add, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        removed = id_list(remove, CAPABILITY_HASH_SIZE, MAX_CAPS_PER_COMMAND, "capability hashes")
        await self._owner_call(cred, OP_CAPS, Ok, add=added, remove=removed)

    async def set_boundaries(self, cred: MailboxCredential, boundaries: Boundaries) -> None:
        """Replace the boundaries of a contact address (protocol.md §4.9).

        Raises:
            LocalProtocolError: ``cred.rid`` is not 16 bytes.
            RelayRejected: ``MALFORMED`` (not a contact address, or a relay before revision
                3), ``AUTH`` (no such mailbox or wrong key).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        await self._owner_call(cred, OP_BOUNDARIES, Ok, bnd=boundaries)

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
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(cred.rid, "rid")
        banned = id_list(add, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        unbanned = id_list(remove, HANDLE_SIZE, MAX_BANS_PER_COMMAND, "handles")
        await self._owner_call(cred, OP_BAN, Ok, hdl=banned, unban=unbanned)

    async def boundaries(self, sid: bytes) -> Boundaries:
        """The boundaries of the contact address with send id ``sid`` (protocol.md §4.9).

        Raises:
            LocalProtocolError: ``sid`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address),
                ``MALFORMED`` (a relay before revision 3).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(sid, "sid")
        reply = await self._request(lambda i: GetBoundaries(id=i, sid=sid))
        return expect(reply, BoundariesIssued).bnd

    async def pow_challenge(self, sid: bytes) -> PowIssued:
        """A single-use proof-of-work nonce for a request to the contact address ``sid``.

        Solve it with :func:`clientlib.wire.solve` (``reply.bits`` leading zero bits, in a
        thread) before ``reply.exp`` and pass ``pow=(reply.nonce, counter)`` to
        :meth:`deposit`. With ``reply.bits == 0`` the address asks for no work.

        Raises:
            LocalProtocolError: ``sid`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox, or not a contact address), ``LIMIT``
                (the per-minute allowance of requests), ``MALFORMED`` (a relay before
                revision 3).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(sid, "sid")
        reply = await self._request(lambda i: GetPow(id=i, sid=sid))
        return expect(reply, PowIssued)

    # --- abuse reports (protocol.md §4.11) ------------------------------------------------

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
        amf: bytes | None = None,
        akid: int | None = None,
        attachment_hashes: Sequence[bytes] = (),
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
            amf: the sender's 448-byte AMF signature from the message body
                (``MessageReceived.amf_signature``; revision 5, §15.5.8).
            akid: the relay key id it was made under (``MessageReceived.akid``); with ``amf``.
            attachment_hashes: instead of ``attachments`` (revision 8): the SHA-256 of each
                attachment plaintext, in order; reveal each plaintext afterwards with
                ``HTTPTransport.reveal_attachment`` (files of any size up to the relay's
                blob limit).

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
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(cred.rid, "rid")
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
            amf=amf,
            akid=akid,
            attachment_hashes=attachment_hashes,
        )
        accepted = await self._owner_call(cred, OP_REPORT, ReportAccepted, **fields)
        return accepted.report

    async def report_status(self, cred: MailboxCredential, report_id: bytes) -> ReportStatus:
        """The state of a report this mailbox filed: ``status`` (``open``/``resolved``),
        ``action`` (``none``/``revoke``/``suspend`` once resolved) and ``ts``.

        Raises:
            LocalProtocolError: ``report_id`` (or ``cred.rid``) is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key, or no report with that id
                filed by this mailbox), ``MALFORMED`` (a relay before revision 4).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(cred.rid, "rid")
        check_report_id(report_id)
        return await self._owner_call(cred, OP_REPORT_STATUS, ReportStatus, report=report_id)

    # --- prekeys (protocol.md §4.7) -------------------------------------------------------

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
            LocalProtocolError: a blob is empty or too large, or (WebSocket) a command
                exceeds the frame limit the relay announced.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``QUOTA`` (the relay would
                hold more one-time items than it allows; that command changed nothing),
                ``MALFORMED`` (a relay that predates prekey hosting), ``TOO_LARGE`` (HTTP:
                the relay's frame limit is below a full upload).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        check_id(cred.rid, "rid")
        result = (0, False)
        for chunk_static, otk, chunk_replace in prekey_chunks(static, one_time, replace):
            stored = await self._owner_call(
                cred, OP_PREKEYS, PreKeysStored, static=chunk_static, otk=otk, replace=chunk_replace
            )
            result = (stored.left, bool(stored.static))
        return result

    async def moderation_keys(self) -> tuple[tuple[int, bytes], ...]:
        """The relay's moderator keys ``(kid, M_kid)``, current first (protocol.md §4.11,
        §15.5.3; revision 5). Unauthenticated.

        Raises:
            RelayRejected: ``MALFORMED`` (a relay older than revision 5), ``UNAVAILABLE``.
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense.
        """
        reply = await self._request(lambda i: GetModerationKeys(id=i))
        keys = expect(reply, ModerationKeys)
        return tuple((e.kid, e.key) for e in keys.keys)

    async def fetch_bundle(self, sid: bytes) -> tuple[bytes, bytes | None]:
        """Fetch the prekey bundle of the mailbox with send id ``sid``.

        The relay hands out one one-time item at most once: the item returned is consumed.

        Returns:
            ``(static, one_time)``; ``one_time`` is None when the mailbox has none left or
            its hourly allowance is used up (fall back to the last-resort key).

        Raises:
            LocalProtocolError: ``sid`` is not 16 bytes.
            RelayRejected: ``AUTH`` (no such mailbox, or it has uploaded no static part),
                ``MALFORMED`` (a relay that predates prekey hosting).
            TransportError: the relay could not be reached in time, the connection dropped,
                or the relay answered nonsense (a retry may consume another item).
        """
        check_id(sid, "sid")
        reply = await self._request(lambda i: FetchBundle(id=i, sid=sid))
        issued = expect(reply, BundleIssued)
        return issued.static, issued.otk
