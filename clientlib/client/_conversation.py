"""Conversation features on top of messages (protocol.md §22.10-§22.13): delivery and read
receipts (batched, delayed or piggy-backed), typing indicators (online-only, throttled),
disappearing messages (a per-conversation timer, expiry with crypto-shredding), unsend,
edit and reactions.

:class:`Conversation` has a sans-IO side, called by the inbox with the book's lock held
(:meth:`Conversation.on_content`, :meth:`Conversation.on_text`,
:meth:`Conversation.received`), and an I/O side: the operations the
:class:`~clientlib.client.Client` facade exposes and :meth:`Conversation.run`, the
background task that sends due receipts, removes expired messages and clears stale typing
indicators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import msgpack

from clientlib.client._book import AddressBook, ContactRef
from clientlib.client._contacts import ContactOps
from clientlib.client._link import Link
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import Outbox, recall_entries, recall_secret
from clientlib.client._receipts import ReceiptDelay, ReceiptScheduler, chunks
from clientlib.client._typing import TypingThrottle, TypingWatch
from clientlib.client.content import (
    MAX_DISAPPEAR_SECONDS,
    MAX_EMOJI_BYTES,
    MAX_TEXT_BYTES,
    Content,
    DisappearTimer,
    EditMessage,
    Reaction,
    Receipt,
    TextMessage,
    Typing,
    Unsend,
)
from clientlib.client.history import HistoryStore
from clientlib.client.state import ContactRecord, OutboxRecord
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    DeliveryChanged,
    DeliveryState,
    DisappearingChanged,
    MessageChanged,
    MessageExpired,
    StoredMessage,
    TypingChanged,
)
from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.session import Session
from clientlib.wire.codec import unpack_strict
from clientlib.wire.limits import FLAG_ONLINE_ONLY

__all__ = ["HANDLED", "Conversation"]

log = logging.getLogger("clientlib.client")

#: Content types this module handles in the inbox.
HANDLED = (Receipt, Typing, DisappearTimer, Unsend, EditMessage, Reaction)
#: An outgoing message only moves forward through these.
_RANK: dict[str, int] = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}
#: The background task looks at least this often (seconds), whatever is due.
_IDLE = 30.0
#: Keystore namespace of receipts kept across a restart: contact id -> msgpack [dlv, rd].
_NS = "receipts"


def _flag(settings: list[int] | None, i: int) -> bool:
    """Setting ``i`` of a settings list (absent list or entry: on, the default)."""
    return settings is None or len(settings) <= i or bool(settings[i])


class Conversation:
    """Receipts, typing, disappearing messages, unsend, edit, react for one client."""

    def __init__(
        self,
        book: AddressBook,
        ops: ContactOps,
        outbox: Outbox,
        link: Link,
        modkeys: ModeratorKeyCache,
        *,
        history: Callable[[], HistoryStore],
        emit: Callable[[ClientEvent], None],
        clock: Callable[[], float],
        receipt_delay: ReceiptDelay,
        rng: random.Random,
    ) -> None:
        self._book = book
        self._ops = ops
        self._outbox = outbox
        self._link = link
        self._modkeys = modkeys
        self._history = history
        self._emit = emit
        self._clock = clock
        self.receipts = ReceiptScheduler(receipt_delay, rng)
        self.throttle = TypingThrottle()
        self.watch = TypingWatch()
        self._wake = asyncio.Event()

    # --- settings ---------------------------------------------------------------------------

    def _sends(self, c: ContactRecord, what: Literal["rd", "dlv", "typing"]) -> bool:
        """Whether we send this to ``c``: our setting and theirs must both be on (the
        settings are reciprocal, protocol.md §22.11)."""
        i = {"rd": 0, "typing": 1, "dlv": 3}[what]
        return _flag(c.settings, i) and _flag(c.peer, i)

    # --- sans-IO: the inbox side (the book's lock held) -------------------------------------

    def on_text(
        self, cid: bytes, content: TextMessage, msg: StoredMessage, now: int
    ) -> StoredMessage:
        """A text message arrived: apply its piggy-backed receipts, end the contact's
        typing indicator, and return the message as it is to be stored."""
        self._apply_receipts(cid, content.dlv or (), content.rd or ())
        self.throttle.heard_from(cid)
        if self.watch.message(cid) is False:
            self._emit(TypingChanged(cid.hex(), False))
        return replace(msg, timer=content.exp) if content.exp else msg

    def received(self, cid: bytes, mid: bytes) -> None:
        """A message is durably stored: owe a delivery receipt (if both sides send them)."""
        c = self._book.contacts.get(cid)
        if c is not None and self._sends(c, "dlv"):
            self.receipts.note(cid, "dlv", mid, self._clock())
            self._wake.set()

    def on_content(self, cid: bytes, content: Content, now: int, events: list[ClientEvent]) -> None:
        """Handle one of :data:`HANDLED` from contact ``cid``."""
        c = self._book.contacts[cid]
        if isinstance(content, Receipt):
            self._apply_receipts(cid, content.dlv or (), content.rd or ())
        elif isinstance(content, Typing):
            if _flag(c.settings, 1):  # we show typing only while we send it too
                changed = self.watch.indicator(cid, bool(content.on), self._clock())
                if changed is not None:
                    events.append(TypingChanged(cid.hex(), changed))
                    self._wake.set()
        elif isinstance(content, DisappearTimer):
            if content.v > c.disv or (content.v == c.disv and content.secs < c.dis):
                c.dis, c.disv = content.secs, content.v
                self._book.put_contact(cid)
                events.append(DisappearingChanged(cid.hex(), content.secs, "peer"))
        elif isinstance(content, Unsend | EditMessage):
            self._on_author_change(cid, content, events)
        elif isinstance(content, Reaction):
            direction = "in" if content.mine else "out"
            m = self._history().update(
                cid.hex(), direction, content.ref.hex(), {"rx": ["peer", content.emoji]}
            )
            if m is None:
                events.append(ClientWarning("forged_reference", "unknown message", cid.hex()))
            else:
                events.append(MessageChanged(m, "reaction"))

    def on_own(
        self,
        to: bytes,
        content: Unsend | EditMessage | Reaction | Receipt,
        now: int,
        events: list[ClientEvent],
    ) -> None:
        """Apply, as ours, an action another device of ours made in the conversation with
        ``to`` (protocol.md §24.7); a message this device does not hold is skipped."""
        h, c = self._history(), to.hex()
        if isinstance(content, Receipt):
            for mid in content.rd or ():
                m = h.get(c, "in", mid.hex())
                if m is None or m.seen:
                    continue
                patch: dict[str, Any] = {"sn": 1}
                if m.timer:
                    patch["ex"] = now + m.timer
                new = h.update(c, "in", m.id, patch)
                if new is not None:
                    events.append(MessageChanged(new, "read"))
            if content.rd:
                self._wake.set()  # a timer may have started
            return
        if isinstance(content, Reaction):
            direction: Literal["in", "out"] = "out" if content.mine else "in"
            new = h.update(c, direction, content.ref.hex(), {"rx": ["me", content.emoji]})
            if new is not None:
                events.append(MessageChanged(new, "reaction"))
            return
        m = h.get(c, "out", content.ref.hex())
        if m is None or m.deleted:
            return
        if isinstance(content, Unsend):
            new = h.update(c, "out", m.id, {"dl": 1}, shred=True)
            if new is not None:
                events.append(MessageChanged(new, "deleted"))
        else:
            new = h.update(c, "out", m.id, {"text": content.text, "ed": content.ts})
            if new is not None:
                events.append(MessageChanged(new, "edited"))

    def _copy_own(self, cid: bytes, content: Content) -> None:
        """Tell our own other devices what we did here (lock held; protocol.md §24.7)."""
        if self._ops.devices is not None:
            self._ops.devices.copy_action(self._ops.seal_and_queue, cid, content)

    def _on_author_change(
        self, cid: bytes, content: Unsend | EditMessage, events: list[ClientEvent]
    ) -> None:
        h, ref = self._history(), content.ref.hex()
        m = h.get(cid.hex(), "in", ref)
        if m is None or m.deleted:
            ours = h.get(cid.hex(), "out", ref) is not None
            if isinstance(content, Unsend) and not ours:
                # A message we never got: its author recalled it at the relay before it
                # reached us (protocol.md §5.10, §22.13), or it is gone here already.
                return
            why = "not the author" if ours else "unknown"
            events.append(ClientWarning("forged_reference", f"{why} message", cid.hex()))
            return
        if isinstance(content, Unsend):
            new = h.update(cid.hex(), "in", ref, {"dl": 1}, shred=True)
            change: Literal["edited", "deleted"] = "deleted"
        else:
            new = h.update(cid.hex(), "in", ref, {"text": content.text, "ed": content.ts})
            change = "edited"
        if new is not None:
            events.append(MessageChanged(new, change))

    def _apply_receipts(self, cid: bytes, dlv: tuple[bytes, ...], rd: tuple[bytes, ...]) -> None:
        h = self._history()
        for ids, state in ((dlv, "delivered"), (rd, "read")):
            for mid in ids:
                m = h.get(cid.hex(), "out", mid.hex())
                if m is None or _RANK.get(m.state, 9) >= _RANK[state]:
                    continue  # unknown (expired, forged) or not a step forward: ignored
                st: DeliveryState = "delivered" if state == "delivered" else "read"
                h.set_state(cid.hex(), mid.hex(), st)
                self._emit(DeliveryChanged(cid.hex(), mid.hex(), st))

    # --- outgoing ---------------------------------------------------------------------------

    def decorate(self, cid: bytes, now: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Extra fields of an outgoing text message (the timer, piggy-backed receipts) and
        of its stored copy; called by :meth:`ContactOps.send` with the lock held."""
        c = self._book.contacts[cid]
        self.throttle.sent_message(cid)
        dlv, rd = self.receipts.take(cid)
        extra: dict[str, Any] = {"dlv": tuple(dlv) or None, "rd": tuple(rd) or None}
        stored: dict[str, Any] = {}
        if c.dis:
            extra["exp"] = c.dis
            stored = {"timer": c.dis, "expires_at": now + c.dis}
            self._wake.set()
        return extra, stored

    async def _seal_queue(self, cid: bytes, content: Content) -> None:
        await self._ops.refresh_moderator_keys()
        async with self._book.lock:
            if cid not in self._book.contacts:
                raise LocalProtocolError("the contact was removed")
            self._ops.seal_and_queue(cid, content.encode())
            await self._book.save()
        self._outbox.wake()

    def keep_pending(self) -> bool:
        """On close (lock held, the caller saves): pending receipts go into the keystore
        (namespace ``receipts``), to leave after a fresh delay once we run again -- never
        at close, where their time would be tied to the fetch that caused them."""
        ks = self._book.ks
        pending = self.receipts.take_all()
        for cid, dlv, rd in pending:
            packed: bytes = msgpack.packb([dlv, rd])
            ks.put(_NS, cid, packed)
        return bool(pending)

    def restore_pending(self) -> None:
        """On start (lock held): receipts kept by :meth:`keep_pending`, each batch with a
        fresh delay from now (the caller saves)."""
        ks, now = self._book.ks, self._clock()
        for cid, raw in ks.items(_NS):
            ks.delete(_NS, cid)
            try:
                dlv, rd = unpack_strict(raw)
                ids = [("dlv", m) for m in dlv] + [("rd", m) for m in rd]
            except (WireError, TypeError, ValueError):
                continue  # advisory: a bad entry is dropped
            if cid in self._book.contacts:
                for kind, m in ids:
                    if type(m) is bytes and len(m) == 16:
                        self.receipts.note(cid, kind, m, now)

    async def flush_receipts(self) -> None:
        """Queue the receipts that are due."""
        # Each receipt is franked for its contact's relay (protocol.md §27.1): every relay
        # with a receipt waiting has its keys fresh, or a TransportError keeps them pending.
        relays = {self._ops.relay_of(cid) for cid in self.receipts.waiting()}
        for relay in relays:
            await self._ops.refresh_moderator_keys(relay)
            self._link.relays.modkeys(relay).current()
        batches = self.receipts.due(self._clock())
        if not batches:
            return
        async with self._book.lock:
            for cid, dlv, rd in batches:
                if cid not in self._book.contacts:
                    continue
                for d, r in chunks(dlv, rd):
                    content = Receipt(dlv=tuple(d) or None, rd=tuple(r) or None)
                    self._ops.seal_and_queue(cid, content.encode())
            await self._book.save()
        self._outbox.wake()

    # --- operations (the facade documents them) ---------------------------------------------

    async def mark_read(self, ref: ContactRef, ids: list[str] | None) -> int:
        book = self._book
        cid = book.resolve_contact(ref)
        now = int(self._clock())
        n = 0
        async with book.lock:
            c = book.contacts[cid]
            h = self._history()
            pick = set(ids) if ids is not None else None
            read: list[bytes] = []
            for m in h.messages(cid.hex()):
                if m.direction != "in" or m.seen or (pick is not None and m.id not in pick):
                    continue
                patch: dict[str, Any] = {"sn": 1}
                if m.timer:
                    patch["ex"] = now + m.timer
                h.update(cid.hex(), "in", m.id, patch)
                if self._sends(c, "rd") and not m.deleted:
                    self.receipts.note(cid, "rd", bytes.fromhex(m.id), self._clock())
                read.append(bytes.fromhex(m.id))
                n += 1
            for _, rd in chunks([], read):
                self._copy_own(cid, Receipt(rd=tuple(rd)))
            await book.save()
        self._wake.set()
        if read:  # the copies for our own devices are in the outbox: send them now
            self._outbox.wake()
        return n

    async def typing(self, ref: ContactRef, active: bool) -> bool:
        book = self._book
        cid = book.resolve_contact(ref)
        c = book.contacts[cid]
        if c.state != "accepted" or c.blocked or c.send is None or not c.session:
            return False
        if not self._sends(c, "typing"):
            return False
        what = self.throttle.typing(cid, active, self._clock())
        if what is None:
            return False
        await self._ops.refresh_moderator_keys(c.relay)
        content = Typing(on=1 if what == "start" else 0).encode()
        async with book.lock:
            session = Session.from_record(c.session, now=int(self._clock()))
            sealed = session.encrypt(
                content,
                rng=book.rng,
                now=int(self._clock()),
                identity=book.identity,
                moderator=self._link.relays.modkeys(c.relay).current(),
            )
            c.session = session.to_record().to_bytes()
            book.put_contact(cid)
            await book.save()  # never reuse a chain key, even if nothing leaves
        try:
            await self._link.depositor_for(c.relay).deposit(
                c.send,
                sealed.ct,
                eid=book.rng(16),
                flags=FLAG_ONLINE_ONLY,
                fc=sealed.fc,
                cap=c.sendcap,
            )
        except (TransportError, RelayRejected) as exc:  # best effort: typing is ephemeral
            log.debug("typing indicator not sent: %s", type(exc).__name__)
            return False
        return True

    async def set_disappearing(self, ref: ContactRef, seconds: int) -> None:
        if type(seconds) is not int or not 0 <= seconds <= MAX_DISAPPEAR_SECONDS:
            raise LocalProtocolError(
                f"a disappearing-message timer is 0 (off) to {MAX_DISAPPEAR_SECONDS} seconds"
            )
        book = self._book
        cid = book.resolve_contact(ref)
        await self._ops.refresh_moderator_keys()
        async with book.lock:
            c = book.contacts[cid]
            c.disv += 1
            c.dis = seconds
            book.put_contact(cid)
            self._ops.seal_and_queue(cid, DisappearTimer(secs=seconds, v=c.disv).encode())
            await book.save()
        self._outbox.wake()
        self._emit(DisappearingChanged(cid.hex(), seconds, "me"))

    def _own(self, cid: bytes, mid: str) -> StoredMessage:
        m = self._history().get(cid.hex(), "out", mid)
        if m is None or m.deleted:
            raise LocalProtocolError("no such message of ours in this conversation")
        return m

    async def unsend(self, ref: ContactRef, mid: str) -> StoredMessage:
        book = self._book
        cid = book.resolve_contact(ref)
        await self._ops.refresh_moderator_keys()
        async with book.lock:
            self._own(cid, mid)
            # Still in our outbox: it never left, so it never will (nothing to tell).
            left = not self._drop_queued(cid, bytes.fromhex(mid))
            recalls: list[tuple[str | None, bytes, bytes]] = []
            if left:
                now = int(self._clock())
                recalls = recall_entries(book, cid, bytes.fromhex(mid), now)
                self._ops.seal_and_queue(cid, Unsend(ref=bytes.fromhex(mid)).encode())
            # Our other devices hold the copy of it (§24.7), whether it left or not.
            self._copy_own(cid, Unsend(ref=bytes.fromhex(mid)))
            new = self._history().update(cid.hex(), "out", mid, {"dl": 1}, shred=True)
            await book.save()
        await self._recall(recalls)
        self._outbox.wake()
        assert new is not None
        self._emit(MessageChanged(new, "deleted"))
        return new

    async def _recall(self, envelopes: list[tuple[str | None, bytes, bytes]]) -> None:
        """Ask the relay of each envelope of an unsent message to delete it while it is
        undelivered (protocol.md §5.10, §22.13), the same way deposits go (two hops
        included). Best effort: the relay's answer says nothing about the envelope, and the
        ``del`` that follows removes the message from a peer that already has it."""
        for relay, sid, eid in envelopes:
            rs = recall_secret(self._book, eid)
            with contextlib.suppress(TransportError, RelayRejected):
                await self._link.depositor_for(relay).recall(sid, eid, rs)

    def _drop_queued(self, cid: bytes, mid: bytes) -> bool:
        ks = self._book.ks
        for key, raw in ks.items("outbox"):
            rec = OutboxRecord.from_bytes(raw)
            if rec.contact == cid and rec.msg == mid:
                ks.delete("outbox", key)
                return True
        return False

    async def edit(self, ref: ContactRef, mid: str, text: str) -> StoredMessage:
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES or "\x00" in text:
            raise LocalProtocolError(f"a message is at most {MAX_TEXT_BYTES} bytes of UTF-8")
        book = self._book
        cid = book.resolve_contact(ref)
        await self._ops.refresh_moderator_keys()
        async with book.lock:
            self._own(cid, mid)
            now = int(self._clock())
            content = EditMessage(ref=bytes.fromhex(mid), ts=now, text=text)
            self._ops.seal_and_queue(cid, content.encode())
            self._copy_own(cid, content)
            new = self._history().update(cid.hex(), "out", mid, {"text": text, "ed": now})
            await book.save()
        self._outbox.wake()
        assert new is not None
        self._emit(MessageChanged(new, "edited"))
        return new

    async def react(
        self, ref: ContactRef, mid: str, emoji: str, *, direction: Literal["in", "out"]
    ) -> StoredMessage:
        if len(emoji.encode("utf-8")) > MAX_EMOJI_BYTES or "\x00" in emoji:
            raise LocalProtocolError(f"a reaction is at most {MAX_EMOJI_BYTES} bytes of UTF-8")
        book = self._book
        cid = book.resolve_contact(ref)
        await self._ops.refresh_moderator_keys()
        async with book.lock:
            m = self._history().get(cid.hex(), direction, mid)
            if m is None or m.deleted:
                raise LocalProtocolError("no such message in this conversation")
            content = Reaction(ref=bytes.fromhex(mid), mine=int(direction == "out"), emoji=emoji)
            self._ops.seal_and_queue(cid, content.encode())
            self._copy_own(cid, content)
            new = self._history().update(cid.hex(), direction, mid, {"rx": ["me", emoji]})
            await book.save()
        self._outbox.wake()
        assert new is not None
        self._emit(MessageChanged(new, "reaction"))
        return new

    # --- background ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def expire_now(self) -> None:
        """Remove every message whose expiry has come (crypto-shredded, durable)."""
        h = self._history()
        nxt = h.next_expiry()
        if nxt is None or nxt > self._clock():
            return
        async with self._book.lock:
            gone = h.expire(int(self._clock()))
        for m in gone:
            self._emit(MessageExpired(m.contact_id, m.id, m.direction))

    async def run(self) -> None:
        """Until cancelled: send due receipts, expire messages, time out typing."""
        while True:
            self._wake.clear()
            now = self._clock()
            times = [now + _IDLE]
            for t in (
                self.receipts.next_due(),
                self._history().next_expiry(),
                self.watch.next_timeout(),
            ):
                if t is not None:
                    times.append(float(t))
            delay = max(0.0, min(times) - now)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
            await self.expire_now()
            for cid in self.watch.expired(self._clock()):
                self._emit(TypingChanged(cid.hex(), False))
            try:
                await self.flush_receipts()
            except TransportError as exc:  # moderator keys unknown yet: wait for a connect
                log.debug("receipts postponed: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
