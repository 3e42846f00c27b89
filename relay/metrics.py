"""Aggregate metrics exposed at ``/metrics``, rendered by ``prometheus_client``.

Only process-wide aggregates: no label ever carries a mailbox, envelope, key or address.
Every family is declared here, once, with its help text (:data:`COUNTERS`); the code counts
with :meth:`Metrics.inc` by short name, so a typo is an error in the tests, not a silent new
family. Each :class:`Metrics` has its own registry (tests run many relays in one process).
The exposition is the Prometheus text format 0.0.4 (:data:`CONTENT_TYPE`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "COUNTERS", "HISTOGRAMS", "Metrics", "timed"]

# ``*_created`` samples double the output and say nothing an operator needs.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The text exposition format generate_latest() writes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_PREFIX: Final = "blindrelay_"

#: short name -> (family name without ``blindrelay_``/``_total``, help, label or None).
COUNTERS: Final[dict[str, tuple[str, str, str | None]]] = {
    "http_requests": ("http_requests", "HTTP requests, by route.", "kind"),
    "errors": ("errors", "Error replies sent (HTTP and WebSocket), by wire error code.", "kind"),
    "connections": ("connections_opened", "WebSocket connections accepted.", None),
    "subscriptions": ("subscriptions", "Mailbox subscriptions started on WebSockets.", None),
    "pushed": ("pushed", "Envelopes pushed to subscribed owners.", None),
    "acked": ("acked", "Envelopes acknowledged (deleted) by their owners.", None),
    "deposits": (
        "deposits",
        "Deposits accepted, by outcome (stored, request, online, duplicate, fanout).",
        "kind",
    ),
    "requests_refused": (
        "requests_refused",
        "Contact requests refused, by reason (boundary, pow).",
        "kind",
    ),
    "recalls": (
        "recalls",
        "Recall frames served (protocol.md §5.10); whether one deleted anything is not counted.",
        None,
    ),
    "fanouts": ("fanouts", "Group fan-out frames served (protocol.md §26.1).", None),
    "fanout_refused": ("fanout_refused", "Fan-out entries refused.", None),
    "pow_issued": ("pow_issued", "Proof-of-work nonces issued.", None),
    "forwarded": (
        "forwarded",
        "Route frames from clients (two-hop, protocol.md §27.3), by outcome (ok or code).",
        "kind",
    ),
    "forward_in": (
        "forwarded_in",
        "Packets other relays forwarded to us, by outcome (ok or code).",
        "kind",
    ),
    "push": (
        "push_wakeups",
        "Push wake-ups (protocol.md §28) by outcome: sent, failed, coalesced, connected "
        "(owner connected meanwhile), refused (private address), dropped (queue full).",
        "outcome",
    ),
    "push_endpoints": ("push_endpoints", "Push endpoint registrations and removals.", "op"),
    "mailboxes_created": ("mailboxes_created", "Mailboxes created.", None),
    "mailboxes_deleted": ("mailboxes_deleted", "Mailboxes deleted by their owners.", None),
    "owner_consent": (
        "owner_consent",
        "Owner consent changes, by kind (caps, ban, bnd, dcaps).",
        "kind",
    ),
    "prekey_uploads": ("prekey_uploads", "Prekey uploads.", None),
    "bundles_issued": (
        "bundles_issued",
        "Prekey bundles handed out, by kind (one_time, static_only).",
        "kind",
    ),
    "reports": ("reports", "Abuse reports received, by outcome.", "kind"),
    "slow_clients": (
        "slow_clients_cut",
        "Connections closed for sending too slowly, by what (header, ws_message).",
        "kind",
    ),
    "blobs": (
        "blobs",
        "Attachment blobs (protocol.md §5.9), by event (created, refused, completed,"
        " downloaded, purged).",
        "kind",
    ),
    "storage_errors": (
        "storage_errors",
        "Storage failures met while serving, by kind (unavailable, full, push, purge, "
        "wakeup: a stored envelope's wake-up could not be published).",
        "kind",
    ),
    "peer_gone": (
        "peer_gone",
        "HTTP requests whose client hung up before its body arrived (not relay errors).",
        None,
    ),
}

#: Wire error codes that only a storage failure produces -> storage_errors kind.
_STORAGE_CODES: Final = {"UNAVAILABLE": "unavailable", "STORAGE_FULL": "full"}

#: Latency buckets (seconds): a durable deposit is a commit with fsync (ms); a push is a
#: frame written to a socket (µs when the peer keeps up).
_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

#: short name -> (family name without ``blindrelay_``, help).
HISTOGRAMS: Final[dict[str, tuple[str, str]]] = {
    "deposit": (
        "deposit_seconds",
        "Time to accept one deposit, until it is durably stored (or refused).",
    ),
    "push": (
        "push_seconds",
        "Time from queueing a pushed envelope on a WebSocket until it is written to the socket.",
    ),
}


class Metrics:
    """Counters, gauges and histograms of one relay process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters: dict[str, Counter] = {}
        self._labelled: dict[str, bool] = {}
        self._children: dict[tuple[str, str], Counter] = {}
        for short, (name, help_text, label) in COUNTERS.items():
            self._counters[short] = Counter(
                _PREFIX + name,
                help_text,
                [label] if label else [],
                registry=self.registry,
            )
            self._labelled[short] = label is not None
        self._histograms = {
            short: Histogram(
                _PREFIX + name, help_text, buckets=_LATENCY_BUCKETS, registry=self.registry
            )
            for short, (name, help_text) in HISTOGRAMS.items()
        }
        self._wakeup_lag = Histogram(
            _PREFIX + "wakeup_lag_seconds",
            "Time from an envelope being durably stored until its wake-up reaches a subscribed "
            "connection, by path: local (the storing process) or pubsub (another process, "
            "through Redis; measured across the processes' wall clocks).",
            ["via"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lag_children = {via: self._wakeup_lag.labels(via) for via in ("local", "pubsub")}
        self._connections = Gauge(
            _PREFIX + "connections", "Open WebSocket connections.", registry=self.registry
        )
        self._push_queue = Gauge(
            _PREFIX + "push_queue_frames",
            "Frames queued for WebSocket peers and not yet written (all connections).",
            registry=self.registry,
        )
        self._stored = Gauge(
            _PREFIX + "stored_envelopes",
            "Envelopes waiting in storage (absent when storage does not answer).",
            ["backend"],
            registry=self.registry,
        )
        self._full = Gauge(
            _PREFIX + "storage_full",
            "1 while storage is out of space (deposits refused, owners can still drain it).",
            registry=self.registry,
        )
        self._open = 0

    # --- counting -----------------------------------------------------------------------

    def inc(self, name: str, label: str = "", amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` (a key of :data:`COUNTERS`)."""
        child = self._children.get((name, label))
        if child is None:
            child = self._child(name, label)
        child.inc(amount)
        if name == "errors" and label in _STORAGE_CODES:
            # UNAVAILABLE and STORAGE_FULL come only from storage (relay.errors.storage_errors).
            self.inc("storage_errors", _STORAGE_CODES[label], amount)

    def _child(self, name: str, label: str) -> Counter:
        """The counter (or labelled child) ``inc(name, label)`` adds to, looked up once: the
        hot path then skips prometheus_client's label resolution."""
        counter = self._counters[name]
        child = counter.labels(label or "none") if self._labelled[name] else counter
        self._children[(name, label)] = child
        return child

    @property
    def connections(self) -> int:
        """Open WebSocket connections (a gauge; ``+= 1`` / ``-= 1`` on open and close)."""
        return self._open

    @connections.setter
    def connections(self, value: int) -> None:
        self._open = value
        self._connections.set(value)

    def queued(self, frames: int) -> None:
        """Frames were queued (positive) or written/dropped (negative) for WebSocket peers."""
        self._push_queue.inc(frames)

    def observe(self, name: str, seconds: float) -> None:
        """Record one latency of the histogram ``name`` (a key of :data:`HISTOGRAMS`)."""
        self._histograms[name].observe(seconds)

    def wakeup_lag(self, via: str, seconds: float) -> None:
        """Record one wake-up lag (``via``: ``local`` or ``pubsub``); a negative value (clock
        skew between processes) counts as 0."""
        self._lag_children[via].observe(max(seconds, 0.0))

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._histograms[name].observe(time.perf_counter() - start)

    # --- exposition ---------------------------------------------------------------------

    def render(self, stored_envelopes: int | None, backend: str, *, full: bool = False) -> str:
        """The whole exposition; ``stored_envelopes`` None when storage did not answer,
        ``full`` while storage is out of space."""
        self._full.set(1 if full else 0)
        self._stored.clear()
        if stored_envelopes is not None:
            self._stored.labels(backend).set(stored_envelopes)
        return generate_latest(self.registry).decode()


class _HasMetrics(Protocol):
    @property
    def metrics(self) -> Metrics: ...


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound=_HasMetrics)


def timed(
    name: str,
) -> Callable[
    [Callable[Concatenate[_S, _P], Awaitable[_R]]], Callable[Concatenate[_S, _P], Awaitable[_R]]
]:
    """Decorate an async method of an object with ``.metrics`` to time it into ``name``."""

    def wrap(
        fn: Callable[Concatenate[_S, _P], Awaitable[_R]],
    ) -> Callable[Concatenate[_S, _P], Awaitable[_R]]:
        @wraps(fn)
        async def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            start = time.perf_counter()
            try:
                return await fn(self, *args, **kwargs)
            finally:
                self.metrics.observe(name, time.perf_counter() - start)

        return run

    return wrap
