"""The outbox: sealed envelopes waiting in the keystore (namespace ``outbox``, keyed by an
8-byte big-endian sequence so that they leave in order), deposited with the same envelope id
on every retry, and the rule that says which relay refusals are worth a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal

import msgpack

from clientlib.client._book import AddressBook
from clientlib.client._link import Link
from clientlib.client._relays import Backoff
from clientlib.client.history import HistoryStore
from clientlib.client.state import OutboxRecord
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    DeliveryChanged,
    DeliveryState,
    WarningKind,
)
from clientlib.crypto.primitives import hmac_sha256
from clientlib.errors import RelayRejected, TransportError
from clientlib.wire.pow import recall_hash
from clientlib.wire.pow import solve as solve_pow

__all__ = [
    "RECALL_KEEP_S",
    "TRANSIENT",
    "Outbox",
    "Verdict",
    "classify",
    "recall_entries",
    "recall_secret",
]

#: How long the envelopes of a sent message are remembered for an unsend's recall: the
#: default dedupe window, after which a relay honours no recall (protocol.md §5.10).
RECALL_KEEP_S = 86_400
#: Domain separation of the reference client's recall secrets.
RECALL_SECRET_CONTEXT: Final = b"blindrelay/v1/recall-secret\x00"
#: Keystore namespace of those envelopes (see :mod:`clientlib.client.state`).
RECALL_NS = "recall"


def recall_secret(book: AddressBook, eid: bytes) -> bytes:
    """The recall secret of our envelope ``eid`` (protocol.md §22.13): HMAC-SHA256 under a
    keystore key drawn on first use, so no secret per envelope is stored."""
    key = book.ks.get("meta", b"recall-key")
    if key is None:
        key = book.rng(32)
        book.ks.put("meta", b"recall-key", key)
    return hmac_sha256(key, RECALL_SECRET_CONTEXT + eid)


def recall_entries(
    book: AddressBook, cid: bytes, mid: bytes, now: int
) -> list[tuple[str | None, bytes, bytes]]:
    """Take the envelopes of our message ``mid`` to ``cid`` still worth a recall, as
    ``(relay, sid, eid)``, out of the keystore; entries past :data:`RECALL_KEEP_S` go too
    (call with the book's lock held)."""
    ks, out = book.ks, []
    for key, raw in ks.items(RECALL_NS):
        relay, sid, sent = msgpack.unpackb(raw)
        if key[:32] == cid + mid and now - sent < RECALL_KEEP_S:
            out.append((relay, sid, key[32:]))
            ks.delete(RECALL_NS, key)
        elif now - sent >= RECALL_KEEP_S:
            ks.delete(RECALL_NS, key)
    return out


#: Refusals that say "not now" rather than "never": the envelope stays queued.
TRANSIENT = frozenset({"UNAVAILABLE", "STORAGE_FULL", "LIMIT", "TIMEOUT", "INTERNAL"})
#: ``retry``: keep it and try later; ``pay_pow``: the address started asking for work after
#: we queued, retry with a proof of work; ``failed``: refused for good, drop it.
Verdict = Literal["retry", "pay_pow", "failed"]


def classify(code: str, rec: OutboxRecord) -> Verdict:
    """What to do with a queued envelope the relay refused with ``code``.

    A contact request (``rec.hdl`` set) over its address's daily ``QUOTA`` fails for good (the
    requester learns it at once); on a pairwise mailbox ``QUOTA`` is the mailbox being full
    and passes.
    """
    request = rec.hdl is not None
    if code == "POW" and rec.pw == 0:
        return "pay_pow"
    if code in TRANSIENT or (code == "QUOTA" and not request):
        return "retry"
    return "failed"


class Outbox:
    """Queue, flush in order, retry with backoff, report delivery."""

    def __init__(
        self,
        book: AddressBook,
        history: Callable[[], HistoryStore],
        emit: Callable[[ClientEvent], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._book = book
        self._history = history
        self._emit = emit
        self._clock = clock
        self._seq = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._backoff: Backoff | None = None

    # --- the keystore side (call with the book's lock held) --------------------------------

    def load(self) -> None:
        """Continue the sequence after what the keystore holds."""
        outbox = self._book.ks.items("outbox")
        self._seq = struct.unpack(">Q", outbox[-1][0])[0] if outbox else 0

    def queue(self, rec: OutboxRecord) -> None:
        self._seq += 1
        self._book.ks.put("outbox", struct.pack(">Q", self._seq), rec.to_bytes())

    def ready(self) -> list[tuple[bytes, OutboxRecord]]:
        """Queued envelopes with a known destination, in order."""
        if not self._book.started:
            return []
        ready = []
        for key, raw in self._book.ks.items("outbox"):
            rec = OutboxRecord.from_bytes(raw)
            if rec.sid is not None and rec.pt is None:
                ready.append((key, rec))
        return ready

    def set_destination(
        self,
        cid: bytes,
        sid: bytes,
        cap: bytes | None,
        seal: Callable[[bytes], tuple[bytes, bytes]],
        relay: str | None = None,
    ) -> None:
        """The contact accepted: what waited for its mailbox can go there now. Content
        written while the request was pending is sealed here, in order, by ``seal(content)
        -> (ct, fc)`` (the now accepted session: ratchet messages, protocol.md §22.2)."""
        ks = self._book.ks
        for key, raw in ks.items("outbox"):
            rec = OutboxRecord.from_bytes(raw)
            if rec.contact == cid and rec.sid is None:
                if rec.pt is not None:
                    rec.ct, rec.fc = seal(rec.pt)
                    rec.pt = None
                rec.sid = sid
                rec.cap = cap
                rec.relay = relay
                ks.put("outbox", key, rec.to_bytes())

    def drop_contact(self, cid: bytes) -> None:
        ks = self._book.ks
        for key, raw in ks.items("outbox"):
            if OutboxRecord.from_bytes(raw).contact == cid:
                ks.delete("outbox", key)

    # --- flushing --------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> None:
        """Wait until nothing deliverable is queued (waits while the relay is unreachable)."""
        while ready := self.ready():
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()
            if self._backoff is not None:
                # What is left waits for a relay's backoff: sleep until the first is over.
                due = self._backoff.next_due({rec.relay for _, rec in ready})
                if due:
                    await asyncio.sleep(due)

    async def run(self, link: Link) -> None:
        """Flush whenever woken; a relay that fails is retried with jittered backoff of its
        own while the envelopes for other relays go on (protocol.md §27.1)."""
        backoff = self._backoff = link.relays.backoff
        while True:
            due = backoff.next_due({rec.relay for _, rec in self.ready()})
            if due is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due):
                        await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush(link)
            finally:
                if not self._wake.is_set():
                    self._idle.set()

    async def _flush(self, link: Link) -> None:
        backoff = link.relays.backoff
        while True:
            # Per relay, in order: a failure stops that relay's envelopes (their order is
            # each conversation's order) until its backoff is over, and no other relay's.
            held: set[str | None] = set()
            ready = [
                (key, rec)
                for key, rec in self.ready()
                if backoff.ready(rec.relay) and rec.relay not in held
            ]
            if not ready:
                return
            done: list[tuple[bytes, OutboxRecord, DeliveryState]] = []
            progressed = False
            try:
                for key, rec in ready[:64]:
                    assert rec.sid is not None
                    if rec.relay in held:
                        continue
                    try:
                        await self._deposit(link, rec)
                        done.append((key, rec, "sent"))
                        backoff.succeeded(rec.relay)
                        progressed = True
                    except RelayRejected as exc:
                        verdict = classify(exc.code, rec)
                        if verdict == "pay_pow":
                            rec.pw = -1
                            self._book.ks.put("outbox", key, rec.to_bytes())
                            backoff.failed(rec.relay)
                            held.add(rec.relay)
                            continue
                        if verdict == "retry":
                            backoff.failed(rec.relay)
                            held.add(rec.relay)
                            continue
                        done.append((key, rec, "failed"))
                        progressed = True
                        request = rec.hdl is not None
                        kind: WarningKind = "request_refused" if request else "mailbox_lost"
                        self._emit(ClientWarning(kind, exc.code, rec.contact.hex()))
                    except TransportError:
                        backoff.failed(rec.relay)
                        held.add(rec.relay)
            finally:
                if done:
                    await self._complete(done)
            if not progressed:
                return

    async def _deposit(self, link: Link, rec: OutboxRecord) -> None:
        assert rec.sid is not None
        pow_: tuple[bytes, int] | None = None
        if rec.hdl is not None and rec.pw != 0:  # a request: pay the address's proof of work
            chal = await link.transport_for(rec.relay).pow_challenge(rec.sid)
            if chal.bits > 0:
                counter = await asyncio.to_thread(
                    solve_pow, rec.sid, chal.nonce, rec.eid, chal.bits
                )
                pow_ = (chal.nonce, counter)
        # An envelope of a text message carries a recall hash, so that an unsend can delete
        # it at the relay while it is undelivered (protocol.md §5.10, §22.13). A relay before
        # revision 15 refuses the field (MALFORMED, nothing stored): then without it.
        rc = None
        if rec.rm is not None and rec.hdl is None:
            rc = recall_hash(recall_secret(self._book, rec.eid))
        deposit = functools.partial(
            link.depositor_for(rec.relay).deposit,
            rec.sid,
            rec.ct,
            eid=rec.eid,
            fc=rec.fc,
            cap=rec.cap,
            hdl=rec.hdl,
            att=rec.att or (),
            pow=pow_,
            ttl=self._ttl(rec),
        )
        try:
            await deposit(rc=rc)
        except RelayRejected as exc:
            if rc is None or exc.code != "MALFORMED":
                raise
            await deposit()

    def _ttl(self, rec: OutboxRecord) -> int | None:
        """A disappearing message's lifetime at the relay: what is left of it on our side
        (protocol.md §22.10), so an undelivered copy vanishes there when ours does."""
        if rec.msg is None:
            return None
        m = self._history().get(rec.contact.hex(), "out", rec.msg.hex())
        if m is None or m.expires_at is None:
            return None
        return max(1, m.expires_at - int(self._clock()))

    async def _complete(self, done: Sequence[tuple[bytes, OutboxRecord, DeliveryState]]) -> None:
        book = self._book
        now = int(self._clock())
        async with book.lock:
            for key, rec, state in done:
                book.ks.delete("outbox", key)
                if state == "sent" and rec.rm is not None and rec.sid is not None:
                    entry: bytes = msgpack.packb([rec.relay, rec.sid, now])
                    book.ks.put(RECALL_NS, rec.contact + rec.rm + rec.eid, entry)
            book.save_soon()
        for _, rec, state in done:
            if rec.msg is not None:
                self._history().set_state(rec.contact.hex(), rec.msg.hex(), state)
                self._emit(DeliveryChanged(rec.contact.hex(), rec.msg.hex(), state))
