"""The sans-IO parts of the conversation features (issue 13): the receipt delay distribution
and batching, the typing throttle and watch. Seeded randomness and explicit clocks: exact,
fast and never flaky."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientlib.client._receipts import (
    DEFAULT_RECEIPT_DELAY,
    ReceiptDelay,
    ReceiptScheduler,
    chunks,
)
from clientlib.client._typing import (
    TYPING_BUDGET,
    TYPING_KEEPALIVE,
    TYPING_TIMEOUT,
    TypingThrottle,
    TypingWatch,
)
from clientlib.client.content import (
    MAX_RECEIPT_IDS,
    DisappearTimer,
    EditMessage,
    Reaction,
    Receipt,
    TextMessage,
    Typing,
    Unsend,
    decode_content,
)
from clientlib.errors import WireError

A, B = b"a" * 16, b"b" * 16


def mid(i: int) -> bytes:
    return i.to_bytes(16, "big")


# --- the delay distribution -------------------------------------------------------------------


def test_default_delay_matches_its_distribution() -> None:
    """Kolmogorov-Smirnov against the truncated exponential's CDF: 20,000 seeded draws; the
    critical value at alpha = 0.001 is 1.95 / sqrt(n). Seeded, so the verdict is fixed."""
    d, rng, n = DEFAULT_RECEIPT_DELAY, random.Random(1303), 20_000
    xs = sorted(d.sample(rng) for _ in range(n))
    ks = max(max((i + 1) / n - d.cdf(x), d.cdf(x) - i / n) for i, x in enumerate(xs))
    assert ks < 1.95 / math.sqrt(n)
    assert d.minimum <= xs[0] and xs[-1] <= d.maximum
    # The mean of the truncated distribution sits a little below the nominal mean.
    scale, span = d.mean - d.minimum, d.maximum - d.minimum
    expected = d.minimum + scale - span / math.expm1(span / scale)
    assert abs(sum(xs) / n - expected) < 0.2
    # Memorylessness, the reason for the choice: P(X > s + t | X > s) = P(X > t + min)
    # up to truncation, checked empirically for s = 5 s, t = 5 s.
    tail = [x for x in xs if x > d.minimum + 5]
    cond = sum(x > d.minimum + 10 for x in tail) / len(tail)
    uncond = sum(x > d.minimum + 5 for x in xs) / n
    assert abs(cond - uncond) < 0.03


@given(
    lo=st.floats(0, 10),
    gap=st.floats(0.01, 100),
    extra=st.floats(0.01, 1000),
    u=st.integers(0, 2**32),
)
def test_delay_always_within_bounds(lo: float, gap: float, extra: float, u: int) -> None:
    d = ReceiptDelay(minimum=lo, mean=lo + gap, maximum=lo + gap + extra)
    x = d.sample(random.Random(u))
    assert d.minimum <= x <= d.maximum
    assert 0.0 <= d.cdf(x) <= 1.0


@pytest.mark.parametrize(
    "args",
    [(1, 1, 2), (2, 1, 3), (1, 5, 5), (-1, 1, 2), (0, float("inf"), 2), (0, 1, float("nan"))],
)
def test_bad_delays_are_refused(args: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="receipt delay"):
        ReceiptDelay(minimum=args[0], mean=args[1], maximum=args[2])


# --- batching ----------------------------------------------------------------------------------


def test_receipts_batch_per_conversation_with_one_delay() -> None:
    s = ReceiptScheduler(ReceiptDelay(minimum=1, mean=2, maximum=5), random.Random(5))
    s.note(A, "dlv", mid(1), now=100.0)
    due = s.next_due()
    assert due is not None and 101 <= due <= 105
    s.note(A, "dlv", mid(2), now=100.5)  # joins the batch, does not push it back
    s.note(A, "rd", mid(1), now=100.6)  # read supersedes delivered for the same id
    s.note(B, "dlv", mid(3), now=100.7)
    early = s.due(due - 0.001)
    assert all(c != A for c, _, _ in early)
    out = {c: (d, r) for c, d, r in early + s.due(200.0)}
    assert out[A] == ([mid(2)], [mid(1)])
    assert out[B] == ([mid(3)], [])
    assert s.next_due() is None


def test_piggy_back_takes_at_most_one_receipt_worth() -> None:
    s = ReceiptScheduler(DEFAULT_RECEIPT_DELAY, random.Random(1))
    for i in range(MAX_RECEIPT_IDS + 3):
        s.note(A, "dlv", mid(i), now=0.0)
    dlv, rd = s.take(A)
    assert dlv == [mid(i) for i in range(MAX_RECEIPT_IDS)] and rd == []
    left = s.due(1e9)
    assert left == [(A, [mid(i) for i in range(MAX_RECEIPT_IDS, MAX_RECEIPT_IDS + 3)], [])]
    assert s.take(A) == ([], [])


@given(st.lists(st.tuples(st.sampled_from(["dlv", "rd"]), st.integers(0, 60)), max_size=80))
def test_chunks_keep_every_id_once_within_the_limit(items: list[tuple[str, int]]) -> None:
    dlv = list(dict.fromkeys(mid(i) for k, i in items if k == "dlv"))
    rd = list(dict.fromkeys(mid(i) for k, i in items if k == "rd"))
    parts = chunks(dlv, rd)
    assert all(0 < len(d) + len(r) <= MAX_RECEIPT_IDS for d, r in parts)
    assert [m for d, _ in parts for m in d] == dlv
    assert [m for _, r in parts for m in r] == rd


def test_many_batches_leave_at_independent_times() -> None:
    """Batches opened at the same moment leave in a random order: the relay cannot match
    receipts to the deliveries they acknowledge by order."""
    s = ReceiptScheduler(DEFAULT_RECEIPT_DELAY, random.Random(9))
    cids = [bytes([i]) * 16 for i in range(50)]
    for c in cids:
        s.note(c, "dlv", mid(0), now=0.0)
    order, t = [], 0.0
    while s.next_due() is not None:
        t = s.next_due() or t
        order += [c for c, _, _ in s.due(t)]
    assert sorted(order) == sorted(cids) and order != cids
    assert t <= DEFAULT_RECEIPT_DELAY.maximum


# --- typing ----------------------------------------------------------------------------------


def test_typing_throttle_start_keepalive_stop() -> None:
    t = TypingThrottle()
    assert t.typing(A, False, 0.0) is None  # nothing to stop
    assert t.typing(A, True, 0.0) == "start"
    assert [t.typing(A, True, x / 10) for x in range(1, 49)] == [None] * 48
    assert t.typing(A, True, TYPING_KEEPALIVE) == "start"  # the keep-alive
    assert t.typing(A, False, 6.0) == "stop"
    assert t.typing(A, False, 6.1) is None
    t.typing(B, True, 0.0)
    t.sent_message(B)  # a message ends it: no stop needed
    assert t.typing(B, False, 1.0) is None


def test_typing_budget_refills_when_the_peer_speaks() -> None:
    t = TypingThrottle()
    sent = [t.typing(A, i % 2 == 0, float(i) * 10) for i in range(TYPING_BUDGET * 3)]
    assert sum(x is not None for x in sent) == TYPING_BUDGET
    t.heard_from(A)
    assert t.typing(A, True, 1e6) == "start"


def test_typing_watch_times_out() -> None:
    w = TypingWatch()
    assert w.indicator(A, True, 0.0) is True
    assert w.indicator(A, True, 3.0) is None  # keep-alive
    assert w.expired(3.0 + TYPING_TIMEOUT - 0.01) == []
    assert w.expired(3.0 + TYPING_TIMEOUT) == [A]
    assert w.indicator(A, False, 20.0) is None
    w.indicator(B, True, 0.0)
    assert w.message(B) is False and w.message(B) is None


# --- content ---------------------------------------------------------------------------------


def test_conversation_contents_round_trip() -> None:
    for c in (
        Receipt(dlv=(mid(1),), rd=(mid(2), mid(3))),
        Typing(on=1),
        DisappearTimer(secs=3600, v=2),
        Unsend(ref=mid(4)),
        EditMessage(ref=mid(5), ts=7, text="fixed"),
        Reaction(ref=mid(6), mine=0, emoji="👍"),
        TextMessage(id=mid(7), ts=1, text="hi", exp=60, dlv=(mid(1),)),
    ):
        assert decode_content(c.encode()) == c


@pytest.mark.parametrize(
    "bad",
    [
        Receipt(dlv=tuple(mid(i) for i in range(MAX_RECEIPT_IDS + 1))),
        Reaction(ref=mid(1), mine=2, emoji="x"),
        Reaction(ref=mid(1), mine=0, emoji="x" * 33),
        DisappearTimer(secs=-1, v=1),
        DisappearTimer(secs=60, v=0),
        Typing(on=3),
    ],
)
def test_bad_conversation_contents_are_refused(bad: object) -> None:
    from clientlib.wire.codec import encode_map

    raw = encode_map(bad.to_map(), 1)  # type: ignore[attr-defined]
    with pytest.raises(WireError):
        decode_content(raw)
