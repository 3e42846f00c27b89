"""Typed records for abuse reports (protocol.md §4.11, §15.4).

:class:`ReportEvidence` is what a received message keeps (in
:attr:`StoredMessage.evidence`, inside the history store) so that it can be reported later;
:class:`ReportRecord` is one report we filed (keystore namespace ``reports``, keyed by the
report id). Both encode to exactly the msgpack arrays earlier versions wrote, so evidence and
reports in existing histories and keystores stay readable with no migration::

    evidence  [1, msg, fk, fc, ft, fx, sender, recipient]
              [2, msg, fk, fc, ft, fx, sender, recipient, akid, amf]     (revision 5)
    report    [contact id, message id, status, filed at]
              [address id, request id, status, filed at, "addr"]          (a contact request)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Self

import msgpack

from clientlib.client._book import AddressBook, RequestRef, credential
from clientlib.client._link import Link
from clientlib.client.types import ClientEvent, ReportDetails, ReportResolved, StoredMessage
from clientlib.errors import LocalProtocolError, WireError
from clientlib.session.events import MessageReceived
from clientlib.transport import MailboxCredential
from clientlib.wire.codec import unpack_strict
from clientlib.wire.frames import StoredEnvelope

__all__ = ["EVIDENCE_VERSION", "ReportEvidence", "ReportRecord", "ReportStatus", "Reports"]

EVIDENCE_VERSION = 2
#: Evidence written before revision 5 (no AMF signature; decodes, cannot be reported).
EVIDENCE_VERSION_LEGACY = 1
ReportStatus = Literal["open", "resolved"]


def _bytes(v: object) -> bytes:
    if type(v) is not bytes:
        raise TypeError
    return v


def _opt_bytes(v: object) -> bytes | None:
    return None if v is None else _bytes(v)


@dataclass(frozen=True, slots=True, repr=False)
class ReportEvidence:
    """What reporting one received message needs, and nothing about any other message.

    Attributes:
        msg: the exact content bytes the franking commitment covers.
        fk: the per-message franking key.
        fc: the franking commitment as delivered.
        ft: the relay's franking tag (None: the relay gave none; not reportable).
        fx: the relay's franking context (None with ``ft``).
        sender: the contact's identity public key.
        recipient: our identity public key.
        akid: the relay key id the sender franked under (None in legacy evidence).
        amf: the sender's verified AMF signature (§15.5; None in legacy evidence, which the
            relay would refuse).
    """

    msg: bytes
    fk: bytes
    fc: bytes
    ft: bytes | None
    fx: bytes | None
    sender: bytes
    recipient: bytes
    akid: int | None = None
    amf: bytes | None = None

    @classmethod
    def of(
        cls, got: MessageReceived, env: StoredEnvelope, *, sender: bytes, recipient: bytes
    ) -> Self:
        """The evidence of one received message: its opened content and franking values,
        and the relay's tag and context from the envelope that carried it."""
        return cls(
            msg=got.plaintext,
            fk=got.franking_key,
            fc=got.franking_commitment,
            ft=env.ft,
            fx=env.fx,
            sender=sender,
            recipient=recipient,
            akid=got.akid,
            amf=got.amf_signature,
        )

    def encode(self) -> bytes:
        """The stored form: version 2 with ``akid`` and ``amf``; evidence without them is
        written as version 1, byte-identical to what earlier versions wrote."""
        fields: list[object] = [
            self.msg,
            self.fk,
            self.fc,
            self.ft,
            self.fx,
            self.sender,
            self.recipient,
        ]
        if self.amf is None or self.akid is None:
            fields.insert(0, EVIDENCE_VERSION_LEGACY)
        else:
            fields = [EVIDENCE_VERSION, *fields, self.akid, self.amf]
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        """Parse stored evidence.

        Raises:
            LocalProtocolError: the evidence is damaged or of an unknown version.
        """
        try:
            items = unpack_strict(raw)
            if type(items) is not list:
                raise ValueError
            akid: int | None = None
            amf: bytes | None = None
            if len(items) == 10 and items[0] == EVIDENCE_VERSION:
                akid, amf = items[8], _bytes(items[9])
                if type(akid) is not int or not 0 <= akid < 2**32 or len(amf) != 448:
                    raise ValueError
                items = items[:8]
            elif len(items) != 8 or items[0] != EVIDENCE_VERSION_LEGACY:
                raise ValueError
            _, msg, fk, fc, ft, fx, snd, rcp = items
            return cls(
                _bytes(msg),
                _bytes(fk),
                _bytes(fc),
                _opt_bytes(ft),
                _opt_bytes(fx),
                _bytes(snd),
                _bytes(rcp),
                akid,
                amf,
            )
        except (WireError, ValueError, TypeError):
            raise LocalProtocolError("the message's report evidence is damaged") from None

    def __repr__(self) -> str:
        return "ReportEvidence(<secret>)"


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """One report we filed: which message of which contact (or, with ``request``, which
    contact request on which of our addresses), and whether it is resolved."""

    contact: bytes  # the contact id; with ``request``: the address id
    message: str  # the message id, hex (as StoredMessage.id); with ``request``: the request id
    status: ReportStatus
    filed: int
    request: bool = False
    reason: str = ""  # the reason filed ("" in records older than issue 22)
    action: str = ""  # the moderator's action once resolved ("" while open or unknown)
    group: bool = False  # a group message: ``contact`` is the group id (revision 16)

    def encode(self) -> bytes:
        """``[contact, message, status, filed, kind, reason, action]`` (kind ``msg`` or
        ``addr``); older records have 4 items (a message) or 5 (``addr``) and still decode."""
        if not self.reason and not self.action and not self.group:  # an older client's bytes
            legacy: list[object] = [self.contact, self.message, self.status, self.filed]
            if self.request:
                legacy.append("addr")
            packed_legacy: bytes = msgpack.packb(legacy, use_bin_type=True)
            return packed_legacy
        kind = "grp" if self.group else "addr" if self.request else "msg"
        items: list[object] = [
            self.contact,
            self.message,
            self.status,
            self.filed,
            kind,
            self.reason,
            self.action,
        ]
        packed: bytes = msgpack.packb(items, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Self:
        """Parse a stored report.

        Raises:
            CorruptKeystore: the record does not decode.
        """
        from clientlib.keystore.errors import CorruptKeystore

        try:
            items = unpack_strict(raw)
            if type(items) is not list or len(items) not in (4, 5, 7):
                raise ValueError
            reason = action = ""
            if len(items) == 7:
                action = items.pop()
                reason = items.pop()
                if type(reason) is not str or type(action) is not str:
                    raise ValueError
                kind = items.pop()
                if kind not in ("msg", "addr", "grp"):
                    raise ValueError
                request, group = kind == "addr", kind == "grp"
            else:
                group = False
                request = len(items) == 5
                if request and items.pop() != "addr":
                    raise ValueError
            cid, mid, status, ts = items
            if status not in ("open", "resolved") or type(ts) is not int:
                raise ValueError
            if type(mid) is not str:
                raise ValueError
            return cls(_bytes(cid), mid, status, ts, request, reason, action, group)
        except (WireError, ValueError, TypeError):
            raise CorruptKeystore("a report record in the keystore does not decode") from None

    def resolved(self, action: str | None = None) -> ReportRecord:
        return ReportRecord(
            self.contact,
            self.message,
            "resolved",
            self.filed,
            self.request,
            self.reason,
            action or "",
            self.group,
        )


class Reports:
    """Filing reports and following them up (:meth:`Client.report` documents them)."""

    def __init__(
        self,
        book: AddressBook,
        link: Link,
        *,
        emit: Callable[[ClientEvent], None],
        now: Callable[[], int],
    ) -> None:
        self._book = book
        self._link = link
        self._emit = emit
        self._now = now
        #: The credential of our mailbox in a group (set by the client; None: gone).
        self.group_credential: Callable[[bytes], MailboxCredential | None] = lambda _: None

    async def report(
        self,
        message: StoredMessage,
        reason: str,
        *,
        note: str | None,
        attachments: Sequence[bytes] = (),
        attachment_hashes: Sequence[bytes] = (),
    ) -> str:
        if message.direction != "in" or message.evidence is None:
            raise LocalProtocolError("only received messages can be reported")
        book = self._book
        cid = book.resolve_contact(message.contact_id)
        c = book.contacts[cid]
        ev = ReportEvidence.decode(message.evidence)
        report_id = await self._file(
            credential(c.rid, c.owner),
            ev,
            reason,
            note,
            attachments=attachments,
            attachment_hashes=attachment_hashes,
        )
        async with book.lock:
            record = ReportRecord(cid, message.id, "open", self._now(), reason=reason)
            book.ks.put("reports", report_id, record.encode())
            await book.save()
        return report_id.hex()

    async def report_group(
        self, gid: bytes, mid: str, evidence: bytes, reason: str, *, note: str | None
    ) -> str:
        """Report a received group message (§26.9) from our mailbox in that group."""
        cred = self.group_credential(gid)
        if cred is None:
            raise LocalProtocolError("we have no mailbox in this group any more")
        ev = ReportEvidence.decode(evidence)
        report_id = await self._file(cred, ev, reason, note)
        book = self._book
        async with book.lock:
            record = ReportRecord(gid, mid, "open", self._now(), reason=reason, group=True)
            book.ks.put("reports", report_id, record.encode())
            await book.save()
        return report_id.hex()

    async def report_request(self, ref: RequestRef, reason: str, *, note: str | None) -> str:
        book = self._book
        qid = book.resolve_request(ref)
        req = book.requests[qid]
        a = book.addresses.get(req.address)
        if a is None:
            raise LocalProtocolError("the address this request came to was deleted")
        if req.ev is None:
            raise LocalProtocolError(
                "this request was stored before requests kept report evidence: not reportable"
            )
        ev = ReportEvidence.decode(req.ev)
        report_id = await self._file(credential(a.rid, a.owner), ev, reason, note)
        async with book.lock:
            record = ReportRecord(
                req.address, qid.hex(), "open", self._now(), request=True, reason=reason
            )
            book.ks.put("reports", report_id, record.encode())
            await book.save()
        return report_id.hex()

    async def _file(
        self,
        cred: MailboxCredential,
        ev: ReportEvidence,
        reason: str,
        note: str | None,
        *,
        attachments: Sequence[bytes] = (),
        attachment_hashes: Sequence[bytes] = (),
    ) -> bytes:
        if ev.ft is None or ev.fx is None:
            raise LocalProtocolError("the relay gave this message no franking tag")
        if ev.amf is None or ev.akid is None:
            raise LocalProtocolError(
                "this message predates sender binding (no AMF signature): not reportable"
            )
        # Filed at the relay the mailbox is on: it made the tag (§15.4, §27.1).
        return await self._link.own_transport(self._book.recv_relay(cred.rid)).report(
            cred,
            msg=ev.msg,
            fk=ev.fk,
            fc=ev.fc,
            ft=ev.ft,
            fx=ev.fx,
            sender=ev.sender,
            recipient=ev.recipient,
            amf=ev.amf,
            akid=ev.akid,
            reason=reason,
            note=note,
            attachments=attachments,
            attachment_hashes=attachment_hashes,
        )

    def details(self) -> list[ReportDetails]:
        out: list[ReportDetails] = []
        for rid, raw in self._book.ks.items("reports"):
            r = ReportRecord.decode(raw)
            out.append(
                ReportDetails(
                    id=rid.hex(),
                    contact_id=r.contact.hex(),
                    status=r.status,
                    kind="group" if r.group else "request" if r.request else "message",
                    reason=r.reason or None,
                    action=r.action or None,
                    filed=r.filed,
                )
            )
        return sorted(out, key=lambda d: (d.filed, d.id))

    def listing(self) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for rid, raw in self._book.ks.items("reports"):
            r = ReportRecord.decode(raw)
            out.append((rid.hex(), r.contact.hex(), r.status))
        return out

    async def check(self) -> None:
        book = self._book
        for rid, raw in book.ks.items("reports"):
            r = ReportRecord.decode(raw)
            if r.status != "open":
                continue
            if r.group:
                found = self.group_credential(r.contact)
                if found is None:
                    continue
                cred = found
            else:
                mailbox = (book.addresses if r.request else book.contacts).get(r.contact)
                if mailbox is None:
                    continue
                cred = credential(mailbox.rid, mailbox.owner)
            st = await self._link.own_transport(book.recv_relay(cred.rid)).report_status(cred, rid)
            if st.status == "resolved":
                async with book.lock:
                    book.ks.put("reports", rid, r.resolved(st.action).encode())
                    await book.save()
                self._emit(ReportResolved(rid.hex(), st.action))
