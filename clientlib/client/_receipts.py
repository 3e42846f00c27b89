"""Delivery and read receipts, batched and delayed (sans-IO; protocol.md §22.11).

A receipt is not sent when a message arrives or is read: the message id joins the pending
batch of its conversation, and the batch leaves either after a random delay drawn once per
batch from :class:`ReceiptDelay` (a :class:`Receipt` content of its own) or, if we send a
message in that conversation first, inside that message (piggy-backed), whichever comes
first. The scheduler reads no clock and draws no randomness of its own: ``now`` and a
``random.Random`` are passed in, so tests replay it exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from clientlib.client.content import MAX_RECEIPT_IDS

__all__ = ["DEFAULT_RECEIPT_DELAY", "Batch", "ReceiptDelay", "ReceiptScheduler"]


@dataclass(frozen=True, slots=True)
class ReceiptDelay:
    """How long a batch of receipts waits: ``minimum`` plus an exponential delay of mean
    ``mean - minimum``, truncated at ``maximum`` (seconds; sampled by inverting the CDF of
    the truncated distribution, so there is no atom at ``maximum``).

    Why exponential (protocol.md §22.11): it is memoryless, so the time a batch has already
    waited tells the relay nothing about when it leaves, and receipts leave in an order
    independent of the arrival order of what they acknowledge (the Poisson-mix argument of
    Loopix). The truncation bounds how stale a tick can be.

    Raises:
        ValueError: not ``0 <= minimum < mean < maximum`` (finite).
    """

    minimum: float = 1.0
    mean: float = 10.0
    maximum: float = 60.0

    def __post_init__(self) -> None:
        vals = (self.minimum, self.mean, self.maximum)
        if not all(math.isfinite(v) for v in vals) or not (
            0 <= self.minimum < self.mean < self.maximum
        ):
            raise ValueError("receipt delay needs 0 <= minimum < mean < maximum seconds")

    def sample(self, rng: random.Random) -> float:
        """One delay: ``min - s ln(1 - u (1 - e^(-(max-min)/s)))`` with ``s = mean - min``."""
        scale = self.mean - self.minimum
        span = self.maximum - self.minimum
        u = rng.random()
        d = self.minimum - scale * math.log1p(-u * -math.expm1(-span / scale))
        return min(max(d, self.minimum), self.maximum)

    def cdf(self, x: float) -> float:
        """P(delay <= x), for tests of the distribution."""
        if x < self.minimum:
            return 0.0
        if x >= self.maximum:
            return 1.0
        scale = self.mean - self.minimum
        return math.expm1(-(x - self.minimum) / scale) / math.expm1(
            -(self.maximum - self.minimum) / scale
        )


#: 1 s to 60 s, mean 10 s (protocol.md §22.11 for the reasoning).
DEFAULT_RECEIPT_DELAY = ReceiptDelay()


@dataclass(slots=True)
class Batch:
    """The receipts waiting for one conversation."""

    due: float
    dlv: list[bytes] = field(default_factory=list)
    rd: list[bytes] = field(default_factory=list)

    def add(self, kind: str, mid: bytes) -> None:
        ids = self.dlv if kind == "dlv" else self.rd
        if mid not in ids:
            ids.append(mid)


class ReceiptScheduler:
    """Pending receipts per conversation (contact id, 16 bytes)."""

    def __init__(self, delay: ReceiptDelay, rng: random.Random) -> None:
        self.delay = delay
        self._rng = rng
        self._batches: dict[bytes, Batch] = {}

    def note(self, cid: bytes, kind: str, mid: bytes, now: float) -> None:
        """A receipt (``dlv`` or ``rd``) is owed for message ``mid``. The first receipt of a
        batch draws the batch's delay; later ones join it (and leave with it)."""
        if kind not in ("dlv", "rd"):
            raise ValueError("kind must be 'dlv' or 'rd'")
        batch = self._batches.get(cid)
        if batch is None:
            batch = self._batches[cid] = Batch(now + self.delay.sample(self._rng))
        if kind == "rd" and mid in batch.dlv:
            batch.dlv.remove(mid)  # read implies delivered: one id, one receipt
        batch.add(kind, mid)

    def next_due(self) -> float | None:
        return min((b.due for b in self._batches.values()), default=None)

    def waiting(self) -> list[bytes]:
        """The contacts with a receipt batch waiting."""
        return list(self._batches)

    def due(self, now: float) -> list[tuple[bytes, list[bytes], list[bytes]]]:
        """Take every batch whose time has come: ``(cid, dlv ids, rd ids)``."""
        out = []
        for cid, b in list(self._batches.items()):
            if b.due <= now:
                del self._batches[cid]
                out.append((cid, b.dlv, b.rd))
        return out

    def take(self, cid: bytes) -> tuple[list[bytes], list[bytes]]:
        """Take up to :data:`MAX_RECEIPT_IDS` ids of ``cid``'s batch to piggy-back on an
        outgoing message; the rest keeps its due time."""
        b = self._batches.get(cid)
        if b is None:
            return [], []
        n_dlv = min(len(b.dlv), MAX_RECEIPT_IDS)
        n_rd = min(len(b.rd), MAX_RECEIPT_IDS - n_dlv)
        dlv, b.dlv = b.dlv[:n_dlv], b.dlv[n_dlv:]
        rd, b.rd = b.rd[:n_rd], b.rd[n_rd:]
        if not b.dlv and not b.rd:
            del self._batches[cid]
        return dlv, rd

    def drop(self, cid: bytes) -> None:
        self._batches.pop(cid, None)

    def take_all(self) -> list[tuple[bytes, list[bytes], list[bytes]]]:
        """Everything pending (the client is closing: kept for the next start)."""
        out = [(cid, b.dlv, b.rd) for cid, b in self._batches.items()]
        self._batches.clear()
        return out


def chunks(dlv: list[bytes], rd: list[bytes]) -> list[tuple[list[bytes], list[bytes]]]:
    """Split a batch into receipts of at most :data:`MAX_RECEIPT_IDS` ids each."""
    items = [("dlv", m) for m in dlv] + [("rd", m) for m in rd]
    out = []
    for i in range(0, len(items), MAX_RECEIPT_IDS):
        part = items[i : i + MAX_RECEIPT_IDS]
        out.append(([m for k, m in part if k == "dlv"], [m for k, m in part if k == "rd"]))
    return out
