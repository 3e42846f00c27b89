"""The inbox: delivered envelopes in, events and acks out, with no transport (sans-IO).

:meth:`Inbox.process` opens a batch of envelopes with the keystore's keys and sessions,
updates the records (in the keystore, not yet saved) and the history, and says which
sequence numbers may be acknowledged::

    async with book.lock:
        events, acks, refill, retry = inbox.process(batch, now)
        await book.save()                # durable first ...
    for rid, seqs in acks: await link.ack(rid, seqs)   # ... then acked (protocol.md §23.2)

Redeliveries are dropped by envelope id (per mailbox) and by message id (the history);
replayed contact requests by their handshake hash. Every stored envelope of the batch is
acked, also the ones dropped: they would only be dropped again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from clientlib.client._book import AddressBook
from clientlib.client._conversation import HANDLED, Conversation
from clientlib.client._devices import Renewal
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import Outbox
from clientlib.client._prekeys import PREKEY_LOW_WATER, Prekeys
from clientlib.client._reports import ReportEvidence
from clientlib.client.content import (
    Accept,
    ContactRequestContent,
    ConversationSettings,
    DeviceListContent,
    FileMessage,
    GroupPairwise,
    OwnAction,
    SentCopy,
    TextMessage,
    decode_content,
)
from clientlib.client.history import HistoryStore
from clientlib.client.relayurl import InvalidRelayUrl, normalize_relay_url
from clientlib.client.state import ContactRecord, RequestRecord, remember
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    Contact,
    ContactAdded,
    MessageReceived,
    MessageSynced,
    RequestReceived,
    StoredMessage,
)
from clientlib.crypto.prekeys import PreKeyKind
from clientlib.crypto.primitives import sha256
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    SessionError,
    WireError,
)
from clientlib.session import Session, accept, open_envelope
from clientlib.session.events import MessageReceived as SessionMessage
from clientlib.wire.frames import StoredEnvelope

if TYPE_CHECKING:
    from clientlib.client._groups import Groups
    from clientlib.client._media import Media

__all__ = ["Inbox", "Processed"]


class Processed(NamedTuple):
    """What one batch produced.

    Attributes:
        events: for the application, in order.
        acks: ``(rid, seqs)`` to acknowledge once the keystore is saved, per mailbox in the
            order first seen (online-only envelopes, ``seq`` 0, need none).
        refill: address ids whose one-time prekeys ran low (one entry per request).
        retry: ``(rid, envelope)`` pairs that failed only because they name a moderator key
            id our cache does not hold (protocol.md §15.5.7: the relay rotated since we last
            fetched its list). Neither acked nor remembered: process them again, with
            ``final=True``, once the list is fetched again. Empty when ``final``.
    """

    events: list[ClientEvent]
    acks: list[tuple[bytes, list[int]]]
    refill: list[bytes]
    retry: list[tuple[bytes, StoredEnvelope]]


def _foreign(relay: str | None, home: str) -> str | None:
    """A request's ``relay`` as records keep it: ``None`` when it is our own relay."""
    try:
        ours = normalize_relay_url(home)
    except InvalidRelayUrl:
        ours = home
    return None if relay is None or relay == ours else relay


class Inbox:
    """Turns delivered envelopes into events (call with the book's lock held)."""

    def __init__(
        self,
        book: AddressBook,
        prekeys: Prekeys,
        outbox: Outbox,
        history: Callable[[], HistoryStore],
        modkeys: ModeratorKeyCache | None = None,
        conversation: Conversation | None = None,
    ) -> None:
        self.modkeys = self._modkeys = modkeys if modkeys is not None else ModeratorKeyCache()
        #: The moderator keys of the relay a contact receives on (``None``: ours; set by
        #: the client to its relay pool's, protocol.md §27.1).
        self.modkeys_for: Callable[[str | None], ModeratorKeyCache] = lambda r: self._modkeys
        self._conv = conversation
        self._book = book
        self._prekeys = prekeys
        self._outbox = outbox
        self._history = history
        #: The client's groups (set by the client; protocol.md §26).
        self.groups: Groups | None = None
        #: Session offers and their answers (protocol.md §24.4); set by the client.
        self.renewal: Renewal | None = None
        #: Files (protocol.md §25); set by the client.
        self.media: Media | None = None

    def process(
        self, batch: Sequence[tuple[bytes, StoredEnvelope]], now: int, *, final: bool = False
    ) -> Processed:
        """Process ``(rid, envelope)`` pairs delivered for our mailboxes at time ``now``.

        Envelopes for mailboxes that are not (or no longer) ours are acked and dropped.
        Unless ``final``, an envelope that fails only on an unknown moderator key id is
        returned in ``retry`` instead (see :class:`Processed`).
        Raises only on a keystore or history failure (then nothing may be acked).
        """
        out = Processed([], [], [], [])
        acks: dict[bytes, list[int]] = {}
        new_messages: list[tuple[Contact, StoredMessage]] = []
        for rid, env in batch:
            entry = self._book.by_rid.get(rid)
            # Franked by the relay the envelope was delivered on: judged with its moderator
            # keys (protocol.md §15.5.7, §27.1), for every relay we receive on.
            self._modkeys = self.receive_modkeys(rid)
            misses = self._modkeys.misses
            if entry is not None:
                kind, key = entry
                if kind == "address":
                    ok = self._on_request(key, env, now, out, retry=not final)
                elif kind == "group":
                    ok = True
                    if self.groups is not None:
                        self.groups.on_envelope(key, env, out.events)
                else:
                    ok = self._on_contact_envelope(
                        key, env, now, out.events, new_messages, retry=not final
                    )
                if not ok and self._modkeys.misses != misses:
                    out.retry.append((rid, env))
                    continue
            if env.seq:
                acks.setdefault(rid, []).append(env.seq)
        if new_messages:
            fresh = self._history().add([m for _, m in new_messages])
            out.events.extend(
                MessageReceived(c, m) for (c, m), ok in zip(new_messages, fresh, strict=True) if ok
            )
            if self._conv is not None:
                for (c, m), ok in zip(new_messages, fresh, strict=True):
                    if ok:
                        self._conv.received(bytes.fromhex(c.id), bytes.fromhex(m.id))
        out.acks.extend(acks.items())
        self._modkeys = self.modkeys
        return out

    def receive_modkeys(self, rid: bytes) -> ModeratorKeyCache:
        """The moderator keys of the relay one of our mailboxes is on."""
        relay = self._book.recv_relay(rid)
        return self.modkeys if relay is None else self.modkeys_for(relay)

    def _on_request(
        self, aid: bytes, env: StoredEnvelope, now: int, out: Processed, *, retry: bool
    ) -> bool:
        """Handle a contact request; False only when it is to be retried (nothing changed)."""
        book, prekeys, events = self._book, self._prekeys, out.events
        a = book.addresses[aid]
        if env.eid in a.eids:
            return True
        misses = self._modkeys.misses
        book.put_address(aid)
        identity = book.identity
        try:
            opened = open_envelope(identity, env.ct)
            header = opened.prekey_header
            if header is None:
                raise DecryptionError
            hs = sha256(header.raw)
            if hs in a.seen:
                remember(a.eids, env.eid)
                events.append(ClientWarning("duplicate_request"))
                return True
            spk = prekeys.load(PreKeyKind.X25519_SIGNED, header.signed_prekey_id)
            kem = prekeys.load(header.kem_kind, header.kem_prekey_id)
            opk = (
                prekeys.load(PreKeyKind.X25519_ONE_TIME, header.one_time_prekey_id)
                if header.one_time_prekey_id is not None
                else None
            )
            if (
                spk is None
                or kem is None
                or (header.one_time_prekey_id is not None and opk is None)
            ):
                raise DecryptionError
            accepted = accept(
                identity,
                opened,
                env.fc,
                signed_prekey=spk,
                kem_prekey=kem,
                one_time_prekey=opk,
                now=now,
                moderator_keys=self._modkeys.lookup,
            )
        except (DecryptionError, LocalProtocolError, KeyValidationError, SessionError):
            if retry and self._modkeys.misses != misses:
                return False
            remember(a.eids, env.eid)
            book.put_address(aid)
            events.append(ClientWarning("undecryptable", "a contact request did not decrypt"))
            return True
        remember(a.eids, env.eid)
        remember(a.seen, hs)
        for kind, kid in accepted.established.consumed_prekeys:
            prekeys.delete(kind, kid)
            if kind is PreKeyKind.MLKEM_ONE_TIME and kid in a.items:
                a.items.remove(kid)
                a.left = max(0, a.left - 1)
        if accepted.established.used_last_resort:
            a.left = 0
            events.append(ClientWarning("prekeys_exhausted", "a request used the last-resort key"))
        book.put_address(aid)
        try:
            content = decode_content(accepted.message.plaintext)
        except WireError:
            content = None
        if not isinstance(content, ContactRequestContent):
            events.append(ClientWarning("malformed_content", "a contact request did not decode"))
            return True
        got = accepted.message
        evidence = ReportEvidence.of(
            got, env, sender=bytes(opened.sender), recipient=bytes(identity.public)
        )
        qid = book.rng(16)
        book.requests[qid] = RequestRecord(
            address=aid,
            identity=bytes(opened.sender),
            session=accepted.session.to_record().to_bytes(),
            reply=content.reply,
            # Absent: the reply is on the relay of the address it arrived on (§27.1).
            relay=_foreign(content.relay if content.relay is not None else a.relay, book.relay_url),
            name=content.name,
            intro=content.intro,
            received=now,
            cap=content.cap,
            hdl=env.hdl,
            ev=evidence.encode(),
        )
        book.put_request(qid)
        events.append(RequestReceived(book.request_view(qid)))
        if a.left < PREKEY_LOW_WATER:
            out.refill.append(aid)
        return True

    def _on_contact_envelope(
        self,
        cid: bytes,
        env: StoredEnvelope,
        now: int,
        events: list[ClientEvent],
        new_messages: list[tuple[Contact, StoredMessage]],
        *,
        retry: bool,
    ) -> bool:
        """Handle an envelope of a contact; False only when it is to be retried (nothing
        changed)."""
        book = self._book
        c = book.contacts[cid]
        if env.eid in c.eids:
            return True
        misses = self._modkeys.misses
        renewal = self.renewal
        if not c.session or c.off:
            # Restored or linked (§24.4, §24.6), or the main device was removed: only
            # another device's session, the answer to our offer, or an offer opens it.
            remember(c.eids, env.eid)
            book.put_contact(cid)
            answered = None
            if renewal is not None:
                answered = renewal.receive_other(cid, env, now)
                if answered is None and not c.off:
                    answered = renewal.on_answer(cid, env, now, events)
                    if answered is not None:
                        c = book.contacts[cid]
                        return self._on_content(
                            cid,
                            c,
                            answered.session,
                            env,
                            answered.message,
                            now,
                            events,
                            new_messages,
                            main=True,
                        )
                elif answered is not None:
                    return self._on_content(
                        cid,
                        c,
                        answered.session,
                        env,
                        answered.message,
                        now,
                        events,
                        new_messages,
                        main=False,
                    )
                if renewal.on_offer(cid, env, now, events):
                    return True
            events.append(ClientWarning("undecryptable", "", cid.hex()))
            return True
        session = Session.from_record(c.session, now=now)  # expires over-age skipped keys
        try:
            received = session.receive(
                env.ct,
                env.fc,
                identity=book.identity,
                now=now,
                relay_tag=env.ft,
                moderator_keys=self._modkeys.lookup,
            )
        except DecryptionError:
            if retry and self._modkeys.misses != misses:
                return False
            other = renewal.receive_other(cid, env, now) if renewal is not None else None
            if other is not None:
                remember(c.eids, env.eid)
                book.put_contact(cid)
                return self._on_content(
                    cid,
                    c,
                    other.session,
                    env,
                    other.message,
                    now,
                    events,
                    new_messages,
                    main=False,
                )
            if renewal is not None and renewal.on_offer(cid, env, now, events):
                remember(c.eids, env.eid)
                book.put_contact(cid)
                return True
            remember(c.eids, env.eid)
            # A failed receive leaves the session as loaded: without the keys that expired
            # on load (protocol.md §12.3), which must leave the keystore too.
            c.session = session.to_record().to_bytes()
            book.put_contact(cid)
            events.append(ClientWarning("undecryptable", "", cid.hex()))
            return True
        remember(c.eids, env.eid)
        c.session = session.to_record().to_bytes()
        book.put_contact(cid)
        return self._on_content(
            cid, c, session, env, received, now, events, new_messages, main=True
        )

    def _on_content(
        self,
        cid: bytes,
        c: ContactRecord,
        session: Session,
        env: StoredEnvelope,
        received: SessionMessage,
        now: int,
        events: list[ClientEvent],
        new_messages: list[tuple[Contact, StoredMessage]],
        *,
        main: bool,
    ) -> bool:
        """Act on the authenticated content of a contact's message (the session is saved;
        ``main``: it came through the main session, not another device's)."""
        book = self._book
        try:
            content = decode_content(received.plaintext)
        except WireError:
            events.append(ClientWarning("malformed_content", "", cid.hex()))
            return True
        if isinstance(content, Accept):
            if c.state != "accepted":
                c.state = "accepted"
                c.send = content.reply
                c.sendcap = content.cap
                if content.name and not c.name:
                    c.name = content.name
                moderator = self.modkeys_for(c.relay).current()

                def seal(pending: bytes) -> tuple[bytes, bytes]:
                    sealed = session.encrypt(
                        pending, rng=book.rng, now=now, identity=book.identity, moderator=moderator
                    )
                    return sealed.ct, sealed.fc

                self._outbox.set_destination(cid, content.reply, content.cap, seal, c.relay)
                c.session = session.to_record().to_bytes()
                book.put_contact(cid)
                events.append(ContactAdded(book.contact_view(cid)))
        elif isinstance(content, GroupPairwise):
            if self.groups is not None:
                self.groups.on_pairwise(cid, content.body, events)
        elif isinstance(content, DeviceListContent) and self.renewal is not None:
            self.renewal.on_device_list(cid, content, main, events)
        elif isinstance(content, SentCopy) and self.renewal is not None:
            msg = self.renewal.on_sent_copy(c, content, now, events)
            if msg is not None and self._history().add([msg])[0]:
                events.append(MessageSynced(book.contact_view(content.to), msg))
        elif isinstance(content, OwnAction) and self.renewal is not None:
            inner = self.renewal.on_own_action(c, content, events)
            if inner is not None and self._conv is not None:
                self._conv.on_own(content.to, inner, now, events)
        elif isinstance(content, ConversationSettings):
            c.peer = [content.receipts, content.typing, content.media]
            if content.delivery is not None:
                c.peer.append(content.delivery)
            book.put_contact(cid)
        elif c.me:  # our own devices send only device lists, copies, actions, settings
            events.append(ClientWarning("malformed_content", "from our own devices"))
        elif isinstance(content, HANDLED) and self._conv is not None:
            self._conv.on_content(cid, content, now, events)
        elif isinstance(content, FileMessage) and self.media is not None:
            self.media.on_file(cid, c, content, received, env, now, events, new_messages)
        elif isinstance(content, TextMessage):
            if received.attachment_hashes or received.amf_signature is None:
                # Finding 2 of issue 20: a message committing to attachments we cannot
                # present (no attachment delivery yet) could never be reported: not shown.
                events.append(ClientWarning("unreportable", "", cid.hex()))
                return True
            evidence = ReportEvidence.of(
                received, env, sender=c.identity, recipient=bytes(book.identity.public)
            )
            msg = StoredMessage(
                cid.hex(),
                content.id.hex(),
                "in",
                content.text,
                content.ts,
                now,
                "received",
                evidence.encode(),
            )
            if self._conv is not None:
                msg = self._conv.on_text(cid, content, msg, now)
            new_messages.append((book.contact_view(cid), msg))
        else:
            events.append(ClientWarning("malformed_content", "", cid.hex()))
        return True
