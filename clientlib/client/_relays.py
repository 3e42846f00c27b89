"""Contacts on other relays (protocol.md §27.1): one HTTP session per foreign relay, its
moderator keys, and a backoff of its own.

A client receives on its own relay (the *home* relay: its addresses and pairwise mailboxes
live there, on one WebSocket with its reconnect and catch-up, see :mod:`._link`). A contact
whose invitation named another relay receives there, so our deposits to it, its address's
boundaries, bundle and proof-of-work nonce, and the moderator keys its messages are franked
under (§15.5.3: the recipient's relay judges reports) all come from that relay. The pool
keeps one keep-alive HTTP session per such relay (fresh connections with ``spread``), opened
on first use; a relay that cannot be reached delays only the envelopes queued for it
(:class:`Backoff`), never those for other relays.

Relays are named by the normal form of their URL (:func:`normalize_relay_url`); ``None``
always means the home relay, so records written before revision 11 (no relay field) keep
their meaning.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable

import aiohttp

from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._route import RoutedTransport
from clientlib.client.config import ClientConfig, parse_proxy
from clientlib.client.relayurl import normalize_relay_url
from clientlib.transport import HTTPTransport
from clientlib.transport.api import RelayAPI

__all__ = ["Backoff", "RelayPool", "modkeys_slot", "open_session"]

#: Backoff bounds of one relay's deposits (protocol.md §23.2): 0.25 s doubling to 15 s.
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 15.0


class Backoff:
    """When each relay may be tried again after a failure (jittered exponential backoff)."""

    __slots__ = ("_clock", "_delay", "_rng", "_until")

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._until: dict[str | None, float] = {}
        self._delay: dict[str | None, float] = {}
        self._clock = clock
        self._rng = rng

    def ready(self, relay: str | None) -> bool:
        return self._until.get(relay, 0.0) <= self._clock()

    def failed(self, relay: str | None) -> None:
        delay = self._delay.get(relay, BACKOFF_FIRST / 2) * 2
        delay = min(delay, BACKOFF_CAP)
        self._delay[relay] = delay
        self._until[relay] = self._clock() + delay * (0.5 + self._rng())

    def succeeded(self, relay: str | None) -> None:
        self._delay.pop(relay, None)
        self._until.pop(relay, None)

    def next_due(self, relays: set[str | None]) -> float | None:
        """Seconds until the earliest of ``relays`` (those with envelopes waiting) that is
        held back may be tried again (``None``: none of them is held back)."""
        times = [self._until[r] for r in relays if r in self._until]
        if not times:
            return None
        return max(0.0, min(times) - self._clock())


def modkeys_slot(relay: str | None) -> bytes:
    """The keystore key (namespace ``modkeys``) of a relay's moderator keys."""
    return b"list" if relay is None else b"relay:" + relay.encode()


def open_session(config: ClientConfig, *, fresh: bool = False) -> aiohttp.ClientSession:
    """A new HTTP session for one connection group (protocol.md §27.2).

    ``fresh``: a new connection per request (``spread`` deposits). With ``config.proxy``
    every connection goes through that SOCKS5 proxy, host names resolved there (``rdns``:
    the client never asks its own resolver for a relay's name), and, with ``isolate``, under
    SOCKS credentials of 16 random bytes of this group alone: Tor gives streams with
    different credentials different circuits (``IsolateSOCKSAuth``).
    """
    if config.proxy is None:
        connector = aiohttp.TCPConnector(force_close=True) if fresh else None
        return aiohttp.ClientSession(connector=connector)
    from aiohttp_socks import ProxyConnector, ProxyType

    host, port = parse_proxy(config.proxy)
    user = password = None
    if config.isolate:
        user, password = config.rng(16).hex(), config.rng(16).hex()
    proxied = ProxyConnector(
        proxy_type=ProxyType.SOCKS5,
        host=host,
        port=port,
        username=user,
        password=password,
        rdns=True,
        force_close=fresh,
    )
    return aiohttp.ClientSession(connector=proxied)


class RelayPool:
    """Transports and moderator keys of the relays our contacts receive on."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        home: Callable[[], str],
        home_modkeys: ModeratorKeyCache,
        session: Callable[[str], aiohttp.ClientSession] | None = None,
        stored_keys: Callable[[bytes], bytes | None] = lambda slot: None,
        home_http: Callable[[], RelayAPI] | None = None,
        pins: tuple[Callable[[str], bytes | None], Callable[[str, bytes], None]] | None = None,
    ) -> None:
        self._stored_keys = stored_keys
        self._home_http = home_http
        self._pins = pins
        self._routed: dict[str, RoutedTransport] = {}
        #: relay -> the identity hash a version-3 link pinned (protocol.md §27.3).
        self._expected: dict[str, bytes] = {}
        self._config = config
        self._home = home
        self._home_modkeys = home_modkeys
        self._new_session = session if session is not None else self._plain_session
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._transports: dict[str, HTTPTransport] = {}
        self._modkeys: dict[str, ModeratorKeyCache] = {}
        self.backoff = Backoff()

    def key(self, url: str | None) -> str | None:
        """The relay's name in records: its normal form, or ``None`` for our own relay.

        Raises:
            InvalidRelayUrl: ``url`` is not a relay URL.
        """
        if url is None:
            return None
        norm = normalize_relay_url(url)
        return None if norm == normalize_relay_url(self._home()) else norm

    def transport(self, relay: str) -> RelayAPI:
        """The transport of a foreign relay: direct (HTTP, its session opened on first use)
        or, with ``private_routing``, through our own relay (protocol.md §27.3)."""
        if not self._config.private_routing or self._home_http is None:
            return self.direct(relay)
        routed = self._routed.get(relay)
        if routed is None:
            get_pin, put_pin = self._pins or (lambda r: None, lambda r, v: None)

            def pinning() -> HTTPTransport:
                # The one direct request (learning the relay identity when no link pins it)
                # goes over a fresh connection, closed at once: no idle connection to D.
                return HTTPTransport(
                    self._session_for(relay + "#pin", fresh=True),
                    relay,
                    request_timeout=self._config.request_timeout,
                )

            routed = RoutedTransport(
                self._home_http(),
                pinning,
                relay,
                pin=lambda: get_pin(relay),
                save_pin=lambda ri: put_pin(relay, ri),
                rng=self._config.rng,
                expected=lambda: self._expected.get(relay),
            )
            self._routed[relay] = routed
        return routed

    def _session_for(self, name: str, *, fresh: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(name)
        if session is None:
            session = open_session(self._config, fresh=fresh)
            self._sessions[name] = session
        return session

    def expect_identity(self, relay: str, relay_hash: bytes) -> None:
        """A version-3 link named ``relay`` with this identity hash: its identity is then
        learned through our relay and checked against the hash, with no direct request."""
        self._expected[relay] = relay_hash

    def direct(self, relay: str) -> HTTPTransport:
        """The direct HTTP transport of a foreign relay (its session opened on first use)."""
        t = self._transports.get(relay)
        if t is None:
            session = self._new_session(relay)
            self._sessions[relay] = session
            t = HTTPTransport(session, relay, request_timeout=self._config.request_timeout)
            self._transports[relay] = t
        return t

    def modkeys(self, relay: str | None) -> ModeratorKeyCache:
        """The moderator-key cache of a relay (``None``: ours)."""
        if relay is None:
            return self._home_modkeys
        cache = self._modkeys.get(relay)
        if cache is None:
            # The list last stored in the keystore (stale, so re-fetched before use when
            # the relay can be reached): enough to seal offline or on an acceptance.
            cache = self._modkeys[relay] = ModeratorKeyCache()
            cache.restore(self._stored_keys(modkeys_slot(relay)))
        return cache

    def relays(self) -> list[str]:
        """The foreign relays with an open session."""
        return list(self._sessions)

    async def close(self) -> None:
        for s in self._sessions.values():
            with contextlib.suppress(Exception):
                await s.close()
        self._sessions.clear()
        self._transports.clear()
        self._routed.clear()

    def _plain_session(self, relay: str) -> aiohttp.ClientSession:
        # One keep-alive connection per relay (its own SOCKS credentials through a proxy);
        # with ``spread`` every request gets a fresh one, as deposits to our own relay do
        # (protocol.md §22.4).
        return open_session(self._config, fresh=self._config.spread)
