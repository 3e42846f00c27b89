"""The link to the relay: which transport carries what, subscriptions, polling, acks, and
whether we are online and caught up.

Incoming envelopes go into :attr:`Link.inbox` as ``(rid, envelope)``, and a ``(rid, None)``
marker once a mailbox's backlog has been delivered; the client processes them (see
:mod:`clientlib.client._inbox`) and acknowledges with :meth:`Link.ack`. Uses only the public
API of :mod:`clientlib.transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from clientlib.client._book import AddressBook, credential
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._relays import RelayPool, open_session
from clientlib.client.config import ClientConfig
from clientlib.client.types import CaughtUp, ClientEvent, ClientWarning, ConnectionChanged
from clientlib.errors import RelayRejected, TransportError
from clientlib.transport import CaughtUp as TCaughtUp
from clientlib.transport import (
    Delivered,
    Disconnected,
    HTTPTransport,
    Reconnected,
    SubscriptionLost,
    WebSocketTransport,
)
from clientlib.transport.api import RelayAPI
from clientlib.wire.client_frames import GetRouteKeys
from clientlib.wire.frames import StoredEnvelope
from clientlib.wire.relay_frames import RouteKeysIssued

__all__ = ["Incoming", "Link", "Relay", "jitter"]

Relay = WebSocketTransport | HTTPTransport
#: ``(rid, envelope)``, or ``(rid, None)``: everything that waited in ``rid`` was delivered.
Incoming = tuple[bytes, StoredEnvelope | None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


def jitter() -> float:
    """A delay factor in [0.5, 1.5): spreads reconnecting clients (not a secret)."""
    return 0.5 + random.random()  # noqa: S311


class Link:
    """The client's connections to one relay (none until :meth:`connect`).

    The client's link is to its home relay; it keeps a child link of the same class per
    further relay it receives on (:attr:`receivers`, protocol.md §27.1), each with its own
    subscribe, reconnect and catch-up, sharing the parent's :attr:`inbox`. Calls about one
    of our mailboxes (:meth:`subscribe`, :meth:`ack`, :meth:`delete_mailbox`,
    :meth:`own_transport`) go to the link of the relay it is on.
    """

    def __init__(
        self,
        book: AddressBook,
        config: ClientConfig,
        *,
        emit: Callable[[ClientEvent], None],
        wake_outbox: Callable[[], None],
        spawn: Spawn,
        modkeys: ModeratorKeyCache | None = None,
        parent: Link | None = None,
        relay: str | None = None,
    ) -> None:
        self._book = book
        self._config = config
        self._identity: bytes | None = None
        #: The receive relay this link is to (normal form), None: the home relay.
        self.relay = relay
        self._parent = parent
        #: Child links to our further receive relays, by normal form (home link only).
        self.receivers: dict[str, Link] = {}
        #: The relays our contacts receive on, when not ours (protocol.md §27.1).
        self.relays: RelayPool
        if parent is not None:
            self.relays = parent.relays
        else:
            self.relays = RelayPool(
                config,
                home=lambda: book.relay_url,
                home_modkeys=modkeys if modkeys is not None else ModeratorKeyCache(),
                stored_keys=lambda slot: book.ks.get("modkeys", slot) if book.started else None,
                home_http=self._home_http,
                pins=(self._get_pin, self._put_pin),
            )
        self._mode = config.transport
        self._spread = config.spread
        self._poll_interval = config.poll_interval
        self._timeout = config.request_timeout
        self._reconnect_cap = config.reconnect_cap
        self._emit = emit
        self._wake_outbox = wake_outbox
        self._spawn = spawn
        self.http_session: aiohttp.ClientSession | None = None
        self._deposit_session: aiohttp.ClientSession | None = None
        self.ws: WebSocketTransport | None = None
        self.ws_by_rid: dict[bytes, WebSocketTransport] = {}
        self.http: HTTPTransport | None = None
        self._depositor: HTTPTransport | None = None
        self.inbox: asyncio.Queue[Incoming] = (
            parent.inbox if parent is not None else asyncio.Queue()
        )
        self.online = False
        self._pending_caught_up: set[bytes] = set()
        self.caught_up = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.http_session is not None

    @property
    def deposit_session(self) -> aiohttp.ClientSession | None:
        """The session deposits go over (with ``spread``: a new connection per request, so
        blob uploads for a contact are not tied to our other requests by connection)."""
        return self._deposit_session

    @property
    def url(self) -> str:
        return self.relay if self.relay is not None else self._book.relay_url

    def _mine(self, rid: bytes) -> bool:
        return self._book.recv_relay(rid) == self.relay

    def _owner_link(self, rid: bytes) -> Link:
        """The link of the relay one of our mailboxes is on."""
        relay = self._book.recv_relay(rid)
        if relay is None or self._parent is not None:
            return self
        return self.receiver(relay)

    def receiver(self, relay: str, *, start: bool = True) -> Link:
        """The child link to one of our further receive relays (created; with ``start``
        and the home link connected, connecting in the background)."""
        child = self.receivers.get(relay)
        if child is None:
            child = Link(
                self._book,
                self._config,
                emit=self._emit,
                wake_outbox=self._wake_outbox,
                spawn=self._spawn,
                parent=self,
                relay=relay,
            )
            self.receivers[relay] = child
            if start and self.connected:
                self._spawn(child.keep_connected())
        return child

    def own_transport(self, relay: str | None) -> Relay:
        """The transport of one of our receive relays (None: home), for requests about our
        own mailboxes there (create, prekeys, caps, bans, moderator keys).

        Raises:
            TransportError: not connected (yet) to that relay.
        """
        return self.transport() if relay is None else self.receiver(relay).transport()

    def book_relay(self, rid: bytes) -> str | None:
        """The receive relay one of our mailboxes is on (None: home)."""
        return self._book.recv_relay(rid)

    def address_transport(self, aid: bytes) -> Callable[[], Relay]:
        """A getter of the transport of the relay a contact address is on."""

        def get() -> Relay:
            a = self._book.addresses.get(aid)
            return self.own_transport(a.relay if a is not None else None)

        return get

    async def open_receiver(self, relay: str) -> Link:
        """The child link to a receive relay, connected now.

        Raises:
            TransportError: the relay could not be reached.
        """
        child = self.receiver(relay, start=False)
        if not child.connected:
            try:
                await child.connect()
            except TransportError:
                await child._close_sessions()
                raise
        return child

    async def keep_connected(self) -> None:
        """A child link: connect, retrying with jittered backoff while the relay cannot be
        reached (its mailboxes wait; the other relays' go on)."""
        backoff = 0.25
        while not self.connected:
            try:
                await self.connect()
            except TransportError:
                await self._close_sessions()
                await asyncio.sleep(backoff * jitter())
                backoff = min(backoff * 2, self._reconnect_cap)

    async def connect(self) -> None:
        """Open the connections and subscribe every mailbox of the book on this relay
        (the home link: also start its children).

        Raises:
            TransportError: the relay could not be reached.
        """
        url = self.url
        if self._parent is None:
            for relay in self._book.receive_relays():
                self.receiver(relay)
        self.http_session = open_session(self._config)
        self._deposit_session = (
            open_session(self._config, fresh=True) if self._spread else self.http_session
        )
        self.http = HTTPTransport(self.http_session, url, request_timeout=self._timeout)
        if self._spread or self._mode == "http":
            self._depositor = HTTPTransport(
                self._deposit_session, url, request_timeout=self._timeout
            )
        if self._mode == "websocket" and not self._spread:
            self.ws = await self._open_ws(self.http_session)
        self.online = True
        mine = [rid for rid in self._book.by_rid if self._mine(rid)]
        if self._parent is None:
            self._pending_caught_up = set(mine)
            if not self._pending_caught_up:
                self.caught_up.set()
        for rid in mine:
            try:
                await self.subscribe(rid)
            except RelayRejected as exc:  # deleted or expired at the relay
                self._emit(ClientWarning("mailbox_lost", f"relay answered {exc.code}"))
                self.mark_caught_up(rid)
        if self._mode == "http":
            self._spawn(self._poll_loop())
        if self._parent is None:
            for child in self.receivers.values():
                self._spawn(child.keep_connected())

    def transport(self) -> Relay:
        """The transport for one-off requests (create, prekeys, bundles).

        Raises:
            TransportError: not connected.
        """
        if self.ws is not None:
            return self.ws
        if self.http is None:
            raise TransportError("the client is not connected")
        return self.http

    def depositor(self) -> Relay:
        """The transport deposits go over (fresh connections with ``spread``)."""
        return self._depositor if self._depositor is not None else self.transport()

    def _home_http(self) -> HTTPTransport:
        if self.http is None:
            raise TransportError("the client is not connected")
        return self.http

    async def relay_identity(self) -> bytes | None:
        """Our relay's identity key (``rkeys?``), for version-3 links; None when the relay
        has no route keys (before revision 11) or cannot be asked now."""
        if self._identity is None:
            try:
                reply = await self._home_http()._request(lambda i: GetRouteKeys(id=i))
            except TransportError:  # RelayRejected included (an older relay: MALFORMED)
                return None
            if isinstance(reply, RouteKeysIssued):
                self._identity = reply.ri
        return self._identity

    def _get_pin(self, relay: str) -> bytes | None:
        """The pinned relay identity of a contact relay (keystore namespace ``relaypins``)."""
        return self._book.ks.get("relaypins", relay.encode()) if self._book.started else None

    def _put_pin(self, relay: str, identity: bytes) -> None:
        if self._book.started:
            self._book.ks.put("relaypins", relay.encode(), identity)
            self._book.save_soon()

    def transport_for(self, relay: str | None) -> RelayAPI:
        """The transport of a contact's relay (``None``: ours) for one-off requests.

        Raises:
            TransportError: not connected.
        """
        if relay is None or self.http_session is None:
            return self.transport()
        return self.relays.transport(relay)

    def depositor_for(self, relay: str | None) -> RelayAPI:
        """Where deposits to a contact on ``relay`` (``None``: ours) go."""
        if relay is None or self.http_session is None:
            return self.depositor()
        return self.relays.transport(relay)

    async def subscribe(self, rid: bytes) -> None:
        """Receive what arrives in one of our mailboxes (now and after reconnects)."""
        owner = self._owner_link(rid)
        if owner is not self:
            await owner.subscribe(rid)
            return
        if self.http_session is None:
            return  # offline: subscribed when connecting
        if self._parent is not None:
            # Caught-up markers are counted by the home link (one CaughtUp for all relays).
            self._parent._pending_caught_up.add(rid)
            self._parent.caught_up.clear()
        else:
            self._pending_caught_up.add(rid)
            self.caught_up.clear()
        cred = self._book.cred(rid)
        if self._mode == "http":
            return  # the poll loop picks it up
        if self._spread:
            session = open_session(self._config)  # its own SOCKS credentials (§27.2)
            try:
                ws = await self._open_ws(session)
            except BaseException:
                await session.close()
                raise
            self.ws_by_rid[rid] = ws
            await ws.subscribe(cred)
            return
        assert self.ws is not None
        await self.ws.subscribe(cred)

    async def delete_mailbox(self, rid: bytes, owner: bytes) -> None:
        """Delete one of our mailboxes at the relay (and close its own socket, if any)."""
        link = self._owner_link(rid)
        if link is not self:
            await link.delete_mailbox(rid, owner)
            return
        cred = credential(rid, owner)
        t = self.ws_by_rid.pop(rid, None)
        if t is not None:
            await t.delete_mailbox(cred)
            await t.close()
        else:
            await self.transport().delete_mailbox(cred)

    async def ack(self, rid: bytes, seqs: list[int]) -> None:
        """Acknowledge stored envelopes where they came from; failures are harmless (the
        relay redelivers and the duplicates are dropped)."""
        link = self._owner_link(rid)
        if link is not self:
            await link.ack(rid, seqs)
            return
        try:
            if self._mode == "http":
                if self.http is not None:
                    await self.http.fetch(self._book.cred(rid), ack=seqs, max=0)
                return
            ws = self.ws_by_rid.get(rid) if self._spread else self.ws
            if ws is not None:
                await ws.ack(rid, seqs)
        except (TransportError, KeyError):
            pass  # redelivered later and dropped as a duplicate

    def mark_caught_up(self, rid: bytes) -> None:
        """Note that ``rid``'s backlog is processed; after the last one, emit :class:`CaughtUp`."""
        if self._parent is not None:
            self._parent.mark_caught_up(rid)
            return
        self._pending_caught_up.discard(rid)
        if not self._pending_caught_up and not self.caught_up.is_set():
            self.caught_up.set()
            self._emit(CaughtUp())

    async def close(self) -> None:
        """Close every connection (call after the tasks using them are cancelled)."""
        for child in self.receivers.values():
            await child.close()
        if self._parent is None:
            await self.relays.close()
        await self._close_sessions()

    async def _close_sessions(self) -> None:
        for t in [self.ws, *self.ws_by_rid.values()]:
            if t is not None:
                with contextlib.suppress(Exception):
                    await t.close()
        for s in {self.http_session, self._deposit_session} | {
            getattr(t, "_session", None) for t in self.ws_by_rid.values()
        }:
            if isinstance(s, aiohttp.ClientSession):
                await s.close()
        self.http_session = self._deposit_session = None
        self.ws, self.http, self._depositor = None, None, None
        self.ws_by_rid.clear()

    # --- receiving -------------------------------------------------------------------------

    async def _open_ws(self, session: aiohttp.ClientSession) -> WebSocketTransport:
        ws = WebSocketTransport(
            session,
            self.url,
            request_timeout=self._timeout,
            backoff_cap=self._reconnect_cap,
        )
        await ws.__aenter__()
        self._spawn(self._read_ws(ws))
        return ws

    def _set_online(self, online: bool) -> bool:
        if self.online == online:
            return False
        self.online = online
        if self._parent is not None:
            return True  # a further receive relay: its state is in Client.receive_relays()
        self._emit(ConnectionChanged(online=online))
        return True

    async def _read_ws(self, ws: WebSocketTransport) -> None:
        async for ev in ws.events():
            if isinstance(ev, Delivered):
                await self.inbox.put((ev.rid, ev.env))
            elif isinstance(ev, TCaughtUp):
                await self.inbox.put((ev.rid, None))
            elif isinstance(ev, Disconnected):
                self._set_online(False)
            elif isinstance(ev, Reconnected):
                self._set_online(True)
                self._wake_outbox()
            elif isinstance(ev, SubscriptionLost):
                self._emit(ClientWarning("mailbox_lost", f"relay answered {ev.code}"))
                self.mark_caught_up(ev.rid)

    async def _poll_loop(self) -> None:
        """HTTP mode: fetch every mailbox, process, ack on the next fetch."""
        assert self.http is not None
        http = self.http
        book = self._book
        backoff = self._poll_interval
        while True:
            try:
                for rid in list(book.by_rid):
                    if rid not in book.by_rid or not self._mine(rid):
                        continue
                    more = True
                    while more:
                        envs, more = await http.fetch(book.cred(rid), max=64)
                        for env in envs:
                            await self.inbox.put((rid, env))
                        if not envs:
                            break
                        await self.inbox.join()
                    await self.inbox.put((rid, None))
                    await self.inbox.join()
                if self._set_online(True):
                    self._wake_outbox()
                backoff = self._poll_interval
                await asyncio.sleep(self._poll_interval)
            except RelayRejected as exc:
                self._emit(ClientWarning("mailbox_lost", f"relay answered {exc.code}"))
                await asyncio.sleep(self._poll_interval)
            except TransportError:
                self._set_online(False)
                await asyncio.sleep(backoff * jitter())
                backoff = min(backoff * 2, 30.0)
