"""How a :class:`~clientlib.client.Client` runs: one frozen, keyword-only :class:`ClientConfig`.

::

    fast = ClientConfig(transport="http", poll_interval=1.0)
    async with Client.open("alice.keystore", passphrase, config=fast) as alice: ...

Derive variants with :func:`dataclasses.replace` (``replace(fast, connect=False)``). The
relay URL, the display name and the keystore are not configuration: they are the client's
identity and stay arguments of :meth:`Client.create` and :meth:`Client.open`.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from clientlib.client._receipts import DEFAULT_RECEIPT_DELAY, ReceiptDelay
from clientlib.client.history import HistoryStore
from clientlib.crypto.keys import RNG
from clientlib.keystore.file import MEMLIMIT_MODERATE, OPSLIMIT_MODERATE, _test_kdf_allowed
from clientlib.wire.frames import Boundaries

__all__ = ["DEFAULT_BOUNDARIES", "ClientConfig", "KdfStrength", "TransportMode"]

#: Boundaries of the contact addresses a client creates unless told otherwise: requests up to
#: the 4 KiB class, no attachments, 100 a day, and a light proof of work (about 0.1 s).
DEFAULT_BOUNDARIES = Boundaries(size=4096, att=0, day=100, pow=12)

TransportMode = Literal["websocket", "http"]
KdfStrength = Literal["moderate", "interactive", "minimum"]

#: Argon2id (opslimit, memlimit) of a new keystore per strength.
_ARGON2: dict[str, tuple[int, int]] = {
    "moderate": (OPSLIMIT_MODERATE, MEMLIMIT_MODERATE),
    "interactive": (2, 64 << 20),
    "minimum": (1, 8 << 10),  # the test suite's only (refused unless _test_kdf_allowed())
}


def argon2_costs(strength: str) -> tuple[int, int]:
    """Argon2id ``(opslimit, memlimit)`` of a strength name (``moderate``, ``interactive``).

    Raises:
        ValueError: an unknown strength (``minimum`` outside the test suite).
    """
    if strength not in _ARGON2 or (strength == "minimum" and not _test_kdf_allowed()):
        raise ValueError("kdf_strength must be moderate or interactive")
    return _ARGON2[strength]


def parse_proxy(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``socks5://host:port`` or ``socks5h://host:port`` proxy URL.

    Raises:
        ValueError: another scheme, no host or port, user info, a path, query or fragment.
    """
    if type(url) is not str or not url.isascii() or any(c.isspace() for c in url):
        raise ValueError("proxy must be socks5://host:port")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("proxy must be socks5://host:port (port 1..65535)") from None
    if (
        parts.scheme.lower() not in ("socks5", "socks5h")
        or not parts.hostname
        or port is None
        or not 0 < port < 65536
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError("proxy must be socks5://host:port")
    return parts.hostname, port


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """Everything about how a client runs, checked when built.

    Attributes:
        history: a :class:`~clientlib.client.HistoryStore`; ``None`` (default): an encrypted
            file next to the keystore (in memory for an in-memory keystore).
        connect: connect on entering the context (``False``: work offline -- list contacts,
            read history, queue messages -- until :meth:`Client.connect`).
        transport: ``"websocket"`` (push, default) or ``"http"`` (polling fallback for
            networks that block WebSockets).
        spread: one connection per mailbox, and deposits over fresh HTTP connections, so no
            single connection links our mailboxes (costs one socket per contact).
        poll_interval: seconds between polls in HTTP mode (> 0).
        request_timeout: seconds one relay request may take (> 0).
        reconnect_cap: the longest wait, in seconds, between two reconnect attempts of a
            dropped WebSocket (> 0; attempts back off exponentially with full jitter up to
            it). The default 30 s spreads a relay restart's reconnects over time; an
            interactive program wants less (``blindchat`` uses 4 s: back within about 4 s
            of the relay's return).
        close_grace: seconds :meth:`Client.close` waits for queued messages to leave
            (0: none).
        boundaries: the boundaries of contact addresses this client creates (a boundary set
            with :meth:`Client.set_boundaries` is remembered in the keystore and wins).
        kdf_strength: Argon2id strength of a *new* keystore: ``moderate`` (default, about a
            second), ``interactive``, or ``minimum`` (tests only).
        rng: randomness (``os.urandom``).
        clock: seconds since the epoch (``time.time``).
        receipt_delay: how long receipts wait before they leave on their own
            (:class:`~clientlib.client.ReceiptDelay`; protocol.md §22.11).
        receipt_rng: where receipt delays are drawn from (``None``: the operating
            system's randomness; a seeded ``random.Random`` for tests).
        proxy: ``socks5://host:port`` (or ``socks5h://``, the same here): every connection
            to every relay goes through this SOCKS5 proxy (Tor: ``socks5://127.0.0.1:9050``),
            and host names are resolved by the proxy, never locally (protocol.md §27.2).
        isolate: with a proxy, give every connection group its own random SOCKS
            credentials -- our relay, each contact relay, the deposit connections, and with
            ``spread`` each mailbox -- so that Tor (``IsolateSOCKSAuth``, its default) puts
            them on different circuits.
        private_routing: reach every contact relay only through our own relay, sealed to
            the contact relay's route key (two hops, protocol.md §27.3): neither relay then
            sees both our address and the mailbox we deposit to.

    Raises:
        ValueError: an unknown ``transport`` or ``kdf_strength``, a time out of range, or a
            ``proxy`` that is not ``socks5://host:port``.
    """

    history: HistoryStore | None = None
    connect: bool = True
    transport: TransportMode = "websocket"
    spread: bool = False
    poll_interval: float = 2.0
    request_timeout: float = 10.0
    reconnect_cap: float = 30.0
    close_grace: float = 2.0
    boundaries: Boundaries = DEFAULT_BOUNDARIES
    kdf_strength: KdfStrength = "moderate"
    rng: RNG = os.urandom
    clock: Callable[[], float] = time.time
    receipt_delay: ReceiptDelay = DEFAULT_RECEIPT_DELAY
    receipt_rng: random.Random | None = None
    proxy: str | None = None
    isolate: bool = True
    private_routing: bool = False

    def __post_init__(self) -> None:
        if self.proxy is not None:
            parse_proxy(self.proxy)
        if self.kdf_strength not in _ARGON2 or (
            self.kdf_strength == "minimum" and not _test_kdf_allowed()
        ):
            raise ValueError("kdf_strength must be moderate or interactive")
        if self.transport not in ("websocket", "http"):
            raise ValueError("transport must be 'websocket' or 'http'")
        for name in ("poll_interval", "request_timeout", "reconnect_cap"):
            value: object = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if not isinstance(self.receipt_delay, ReceiptDelay):
            raise ValueError("receipt_delay must be a ReceiptDelay")
        grace: object = self.close_grace
        if not (isinstance(grace, int | float) and math.isfinite(grace) and grace >= 0):
            raise ValueError("close_grace must be a number of seconds, 0 or more")

    @property
    def argon2(self) -> tuple[int, int]:
        """Argon2id ``(opslimit, memlimit)`` for a new keystore."""
        return _ARGON2[self.kdf_strength]
