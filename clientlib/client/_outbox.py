"""The outbox: sealed envelopes waiting in the keystore (namespace ``outbox``, keyed by an
8-byte big-endian sequence so that they leave in order), deposited with the same envelope id
on every retry, and the rule that says which relay refusals are worth a retry.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Literal

from clientlib.client._book import AddressBook
from clientlib.client._link import Link, Relay, jitter
from clientlib.client.history import HistoryStore
from clientlib.client.state import OutboxRecord
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    DeliveryChanged,
    DeliveryState,
    WarningKind,
)
from clientlib.errors import RelayRejected, TransportError
from clientlib.wire.pow import solve as solve_pow

__all__ = ["TRANSIENT", "Outbox", "Verdict", "classify"]

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
    ) -> None:
        self._book = book
        self._history = history
        self._emit = emit
        self._seq = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()

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
        self, cid: bytes, sid: bytes, cap: bytes, seal: Callable[[bytes], tuple[bytes, bytes]]
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
        while self.ready():
            self._idle.clear()
            self._wake.set()
            await self._idle.wait()

    async def run(self, link: Link) -> None:
        """Flush whenever woken; on transport trouble retry with jittered backoff."""
        backoff = 0.25
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush(link)
                backoff = 0.25
            except TransportError:
                await asyncio.sleep(backoff * jitter())
                backoff = min(backoff * 2, 15.0)
                self._wake.set()
            finally:
                if not self._wake.is_set():
                    self._idle.set()

    async def _flush(self, link: Link) -> None:
        depositor = link.depositor()
        while True:
            ready = self.ready()
            if not ready:
                return
            done: list[tuple[bytes, OutboxRecord, DeliveryState]] = []
            try:
                for key, rec in ready[:64]:
                    assert rec.sid is not None
                    try:
                        await self._deposit(link, depositor, rec)
                        done.append((key, rec, "sent"))
                    except RelayRejected as exc:
                        verdict = classify(exc.code, rec)
                        if verdict == "pay_pow":
                            rec.pw = -1
                            self._book.ks.put("outbox", key, rec.to_bytes())
                            raise TransportError("proof of work now required") from exc
                        if verdict == "retry":
                            raise TransportError(f"relay answered {exc.code}") from exc
                        done.append((key, rec, "failed"))
                        request = rec.hdl is not None
                        kind: WarningKind = "request_refused" if request else "mailbox_lost"
                        self._emit(ClientWarning(kind, exc.code, rec.contact.hex()))
            finally:
                if done:
                    await self._complete(done)

    async def _deposit(self, link: Link, depositor: Relay, rec: OutboxRecord) -> None:
        assert rec.sid is not None
        pow_: tuple[bytes, int] | None = None
        if rec.hdl is not None and rec.pw != 0:  # a request: pay the address's proof of work
            chal = await link.transport().pow_challenge(rec.sid)
            if chal.bits > 0:
                counter = await asyncio.to_thread(
                    solve_pow, rec.sid, chal.nonce, rec.eid, chal.bits
                )
                pow_ = (chal.nonce, counter)
        await depositor.deposit(
            rec.sid, rec.ct, eid=rec.eid, fc=rec.fc, cap=rec.cap, hdl=rec.hdl, pow=pow_
        )

    async def _complete(self, done: Sequence[tuple[bytes, OutboxRecord, DeliveryState]]) -> None:
        book = self._book
        async with book.lock:
            for key, _, _ in done:
                book.ks.delete("outbox", key)
            book.save_soon()
        for _, rec, state in done:
            if rec.msg is not None:
                self._history().set_state(rec.contact.hex(), rec.msg.hex(), state)
                self._emit(DeliveryChanged(rec.contact.hex(), rec.msg.hex(), state))
