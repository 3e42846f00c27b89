"""The :class:`Client`: end-to-end encrypted messaging for applications, in a few lines.

::

    async with Client.create("alice.keystore", b"passphrase", relay_url=URL) as alice:
        invitation = await alice.create_invitation()
        print(invitation.link)
        async for event in alice.events():
            if isinstance(event, RequestReceived):
                contact = await alice.accept_request(event.request)
                await alice.send(contact, "hello")

How it runs is one :class:`~clientlib.client.ClientConfig` (``config=``): transport, timeouts,
boundaries, keystore strength, history store, randomness and clock.

Delivery guarantees (protocol.md §23.2): an incoming envelope is acknowledged to the relay
only after the message is in the history store and the session state is in the keystore,
both durably; redeliveries are dropped by envelope id and by message id; outgoing messages
are sealed and written to the keystore's outbox before :meth:`Client.send` returns, and the
outbox is flushed in order, with the same envelope ids on retry, whenever the relay is
reachable.

The facade documents the API and orchestrates private parts: ``_book`` (identity, addresses,
contacts, requests; lookups; saving), ``_inbox`` (sans-IO: envelopes to events and acks),
``_outbox`` (queue, flush, retry rule), ``_link`` (transports, subscriptions, polling, acks),
``_prekeys`` (prekeys and their upkeep at the relay), ``_background`` (tasks, the receive
loop around the inbox, upkeep on connect), ``_contacts`` (invitations, requests,
blocking, settings, sending), ``_reports`` (abuse reports and their typed records),
``_conversation`` (receipts, typing, disappearing messages, unsend, edit, react),
``_relays`` (contact relays: sessions, moderator keys, backoff, proxies), ``_media``
(files: upload, download, consent, view-once; methods from the ``_files`` mixin),
``_route`` (two-hop private routing), ``_devices`` (session offers, device lists, fan-out to every
device) and ``_linking`` (linking by approval, removal); the account methods (devices,
backup, passphrase, duress) come from the ``_account`` mixin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Self

from clientlib.client._account import AccountMixin
from clientlib.client._background import Tasks, expire_loop, receive_loop, upkeep
from clientlib.client._book import AddressBook, ContactRef, RequestRef, credential
from clientlib.client._contacts import BoundaryViolation, ContactOps
from clientlib.client._conversation import Conversation
from clientlib.client._devices import Renewal, restore_into
from clientlib.client._export import export_document, write_new_private
from clientlib.client._files import FilesMixin
from clientlib.client._group_api import GroupsMixin
from clientlib.client._group_reports import group_credential
from clientlib.client._groups import Groups
from clientlib.client._inbox import Inbox
from clientlib.client._link import Link
from clientlib.client._linking import (
    LinkedState,
    link_into,
)
from clientlib.client._media import MAX_REPORTED_FILE, Media, MediaRefused
from clientlib.client._modkeys import ModeratorKeyCache
from clientlib.client._outbox import Outbox
from clientlib.client._prekeys import Prekeys
from clientlib.client._push import register_push, unregister_push
from clientlib.client._reports import Reports
from clientlib.client.backup import BackupContents
from clientlib.client.config import ClientConfig
from clientlib.client.history import EncryptedFileHistory, HistoryStore, MemoryHistory
from clientlib.client.invite import Invitation
from clientlib.client.types import (
    ClientEvent,
    ClientWarning,
    Contact,
    ContactAdded,
    ContactRequest,
    DeviceLinked,
    Direction,
    MessageReceived,
    ReportDetails,
    StoredMessage,
)
from clientlib.crypto.keys import IdentityPublicKey
from clientlib.errors import KeystoreError, LocalProtocolError, RelayRejected
from clientlib.keystore import FileKeystore, Keystore
from clientlib.transport.api import RelayAPI
from clientlib.wire.frames import Boundaries, MailboxInfo

__all__ = ["BoundaryViolation", "Client", "ContactRef", "MediaRefused", "RequestRef"]

log = logging.getLogger("clientlib.client")


class Client(AccountMixin, FilesMixin, GroupsMixin):
    """An end-to-end encrypted messaging client bound to one keystore and one relay.

    Build one with :meth:`create` (new identity) or :meth:`open` (existing keystore) and use
    it as an async context manager; entering opens the keystore (Argon2id, about a second at
    the default strength), opens the history, connects to the relay, renews every
    subscription and flushes the outbox. Pass ``config=ClientConfig(connect=False)`` to work
    offline (list contacts, read history, queue messages); see
    :class:`~clientlib.client.ClientConfig` for every setting.

    Why this class is over 40 methods: it is the library's one public surface, one method per
    operation an application calls (plus the context-manager and construction plumbing). The
    work lives in the private modules behind it (``_book``, ``_contacts``, ``_conversation``,
    ``_inbox``, ``_outbox``, ``_link``, ``_prekeys``, ``_reports``, ``_security``, ...): a
    method here checks its arguments and delegates in a few lines, so adding a capability adds
    a short method, never logic.
    """

    # --- construction ---------------------------------------------------------------------

    def __init__(
        self,
        keystore_path: str | os.PathLike[str] | None,
        passphrase: bytes | str,
        *,
        create: bool,
        relay_url: str | None = None,
        name: str | None = None,
        config: ClientConfig | None = None,
        allow_weak_passphrase: bool = False,
    ) -> None:
        if create and not relay_url:
            raise LocalProtocolError("a relay_url is needed to create a client")
        self._config = cfg = config if config is not None else ClientConfig()
        if not isinstance(cfg, ClientConfig):
            raise TypeError("config must be a ClientConfig")
        self._path = Path(keystore_path) if keystore_path is not None else None
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._create = create
        self._allow_weak = allow_weak_passphrase
        self._relay_override = relay_url
        self._name_init = name
        self._close_grace = cfg.close_grace
        self._history: HistoryStore = MemoryHistory()
        self._tasks = Tasks()
        self._events: asyncio.Queue[ClientEvent | None] = asyncio.Queue()
        self._book = AddressBook(rng=cfg.rng, boundaries=cfg.boundaries)
        self._prekeys = Prekeys(self._book)
        self._outbox = Outbox(self._book, lambda: self._history, self._emit, clock=cfg.clock)
        self._modkeys = ModeratorKeyCache()
        self._link = Link(
            self._book,
            cfg,
            emit=self._emit,
            wake_outbox=self._outbox.wake,
            spawn=self._tasks.spawn,
            modkeys=self._modkeys,
        )
        self._reports = Reports(self._book, self._link, emit=self._emit, now=self._now)
        self._ops = ContactOps(
            self._book,
            self._prekeys,
            self._outbox,
            self._link,
            history=lambda: self._history,
            emit=self._emit,
            now=self._now,
            modkeys=self._modkeys,
            spawn=self._tasks.spawn,
        )
        self._conv = Conversation(
            self._book,
            self._ops,
            self._outbox,
            self._link,
            self._modkeys,
            history=lambda: self._history,
            emit=self._emit,
            clock=cfg.clock,
            receipt_delay=cfg.receipt_delay,
            rng=cfg.receipt_rng if cfg.receipt_rng is not None else random.SystemRandom(),
        )
        self._ops.decorate = self._conv.decorate
        self._inbox = Inbox(
            self._book,
            self._prekeys,
            self._outbox,
            lambda: self._history,
            self._modkeys,
            self._conv,
        )
        self._groups = Groups(
            self._book,
            self._link,
            seal_pairwise=self._ops.seal_and_queue,
            emit=self._emit,
            now=self._now,
            spawn=self._tasks.spawn,
            wake_outbox=self._outbox.wake,
            receipt_delay=cfg.receipt_delay,
            rng=cfg.receipt_rng,
        )
        self._inbox.groups = self._groups
        self._reports.group_credential = lambda gid: group_credential(self._groups.live, gid)
        self._media = Media(
            self._book,
            self._ops,
            self._outbox,
            self._link,
            cfg,
            history=lambda: self._history,
            emit=self._emit,
            now=self._now,
        )
        self._inbox.media = self._media
        self._media.groups = self._groups
        self._inbox.modkeys_for = self._link.relays.modkeys
        self._renewal = Renewal(
            self._book, self._prekeys, self._outbox, self._modkeys, emit=self._emit
        )
        self._renewal.modkeys_for = self._link.relays.modkeys
        self._inbox.renewal = self._renewal
        self._ops.devices = self._renewal
        self._restore: BackupContents | None = None
        self._linked: LinkedState | None = None
        self._closed = False
        self._started = False

    @classmethod
    def create(
        cls,
        keystore_path: str | os.PathLike[str] | None,
        passphrase: bytes | str,
        *,
        relay_url: str,
        name: str | None = None,
        config: ClientConfig | None = None,
        allow_weak_passphrase: bool = False,
    ) -> Self:
        """A client with a new identity, stored in a new keystore at ``keystore_path``
        (``None``: in memory only, gone when closed). Created on entering the context.
        ``allow_weak_passphrase``: the user insisted on a passphrase the strength policy
        refuses (still at least 8 characters).

        Raises:
            LocalProtocolError: no ``relay_url``.
            KeystoreExists: (on entering) a keystore already exists at the path.
            WeakPassphrase: (on entering) the passphrase is too short or guessable (protocol.md
                §23.4).
        """
        return cls(
            keystore_path,
            passphrase,
            create=True,
            relay_url=relay_url,
            name=name,
            config=config,
            allow_weak_passphrase=allow_weak_passphrase,
        )

    @classmethod
    def open(
        cls,
        keystore_path: str | os.PathLike[str],
        passphrase: bytes | str,
        *,
        relay_url: str | None = None,
        config: ClientConfig | None = None,
    ) -> Self:
        """A client for an existing keystore (the relay URL is remembered in it; a
        ``relay_url`` given here replaces it).

        Raises (on entering):
            KeystoreNotFound, WrongPassphrase, CorruptKeystore, UnsupportedKeystoreVersion,
            KeystoreLocked: see :mod:`clientlib.keystore`; nothing is changed on failure.
        """
        return cls(keystore_path, passphrase, create=False, relay_url=relay_url, config=config)

    @classmethod
    def restore(
        cls,
        backup_path: str | os.PathLike[str],
        recovery_words: str,
        keystore_path: str | os.PathLike[str] | None,
        passphrase: bytes | str,
        *,
        relay_url: str | None = None,
        config: ClientConfig | None = None,
        allow_weak_passphrase: bool = False,
    ) -> Self:
        """A client restored from a backup (:meth:`backup`) into a new keystore: the same
        identity, contacts and settings; no history. On start it offers every contact a
        new session (protocol.md §24.4); both sides get :class:`SessionRenewed` once the
        contact's client answers, and messages written meanwhile wait in the outbox.

        The backup is read and checked here, before anything is created.

        Raises:
            CorruptBackup: not a backup, or a version this client does not read.
            WrongRecoveryKey: the words do not check, or do not open this backup.
            OSError: the backup cannot be read.
            KeystoreExists, WeakPassphrase: (on entering) as for :meth:`create`.
        """
        from clientlib.client.backup import open_backup, read_backup, recovery_key_from_words

        contents = open_backup(read_backup(backup_path), recovery_key_from_words(recovery_words))
        client = cls(
            keystore_path,
            passphrase,
            create=True,
            relay_url=relay_url or contents.relay,
            name=contents.name,
            config=config,
            allow_weak_passphrase=allow_weak_passphrase,
        )
        client._restore = contents
        return client

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the keystore and history, then connect (unless ``config.connect`` is False)."""
        if self._started:
            raise LocalProtocolError("a client can be started only once")
        self._started = True
        await asyncio.to_thread(self._open_state)
        try:
            await self._conv.expire_now()  # what expired while we were closed goes first
            async with self._book.lock:
                self._conv.restore_pending()
            self._tasks.spawn(self._conv.run())
            if self._config.connect:
                await self.connect()
        except BaseException:
            await self.close()
            raise

    def _open_state(self) -> None:
        book, cfg = self._book, self._config
        ks: Keystore
        if self._create:
            ks = book.create(
                self._path,
                self._passphrase,
                relay_url=self._relay_override or "",
                name=self._name_init or "",
                kdf=cfg.argon2,
                allow_weak=self._allow_weak,
                seed=self._seed(),
            )
            if self._restore is not None:
                restore_into(ks, self._restore)
            elif self._linked is not None:
                link_into(ks, self._linked, now=self._now())
        else:
            assert self._path is not None
            ks = FileKeystore.open(self._path, self._passphrase, rng=cfg.rng)
        self._passphrase = b""
        try:
            book.load(
                ks,
                relay_override=self._relay_override,
                update_relay=not self._create,
                now=self._now(),
            )
            book.attach(ks)
            self._outbox.load()
            self._groups.load()
            # A keystore from before revision 10 gets its device id in memory, saved with
            # the next save: an open writes nothing (protocol.md §24.2).
            self._renewal.ensure_device()
            self._renewal.linked = ks.get("meta", b"linked") is not None
            if self._restore is not None or self._linked is not None:
                self._renewal.offer_all(self._now())
                if self._linked is not None:
                    me = [d for d in self._renewal.devices() if d.this_device]
                    self._events.put_nowait(DeviceLinked(me[0]))
                self._restore = self._linked = None
                ks.save()
            if cfg.history is not None:
                self._history = cfg.history
            elif isinstance(ks, FileKeystore):
                where = ks.history_path
                if where is not None:  # None: a decoy, whose history stays in memory
                    self._history = EncryptedFileHistory(where, ks, rng=cfg.rng)
            if book.expired_on_open:
                ks.save()  # the over-age skipped keys leave the file now, not at the next save
        except BaseException:
            book.attach(None)
            ks.close()
            raise

    async def connect(self) -> None:
        """Connect to the relay, subscribe every mailbox, start flushing the outbox.

        Raises:
            TransportError: the relay could not be reached.
        """
        if self._link.connected:
            return
        await self._link.connect()
        book, spawn = self._book, self._tasks.spawn
        spawn(
            receive_loop(
                self._link,
                book,
                self._inbox,
                self._prekeys,
                self._outbox,
                now=self._now,
                emit=self._emit,
                spawn=spawn,
                stop=self.close,
            )
        )
        spawn(self._outbox.run(self._link))
        spawn(self._groups.flush_all())
        spawn(self._groups.resume_all())
        spawn(expire_loop(book, now=self._now))
        spawn(
            upkeep(
                book, self._prekeys, self._link, check_reports=self.check_reports, emit=self._emit
            )
        )
        spawn(self._media.ensure_capabilities())
        self._outbox.wake()

    async def close(self) -> None:
        """Stop, disconnect, and close the keystore and history. Idempotent."""
        if self._closed:
            return
        if self._book.started:
            # Receipts still waiting are kept for the next start (protocol.md §22.11).
            with contextlib.suppress(KeystoreError):
                async with self._book.lock:
                    if self._conv.keep_pending():
                        await self._book.save()
        if self._link.connected and self._outbox.ready() and self._close_grace > 0:
            # Give queued messages a moment to leave; whatever stays is sent next time.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._close_grace):
                    await self.sync()
        self._closed = True
        self._book.closing = True
        self._groups.close()
        await self._tasks.cancel_all()
        await self._link.close()
        self._events.put_nowait(None)
        await self._book.close()
        self._history.close()

    # --- public: identity, contacts, history ----------------------------------------------

    @property
    def identity(self) -> IdentityPublicKey:
        """Our identity public key."""
        return self._book.identity.public

    @property
    def relay_url(self) -> str:
        return self._book.relay_url

    @property
    def name(self) -> str:
        """Our display name (sent with requests and acceptances; may be empty)."""
        return self._book.name

    @property
    def history(self) -> HistoryStore:
        return self._history

    def contacts(self) -> list[Contact]:
        """Every contact, oldest first."""
        return self._book.contact_views()

    def contact(self, ref: ContactRef) -> Contact:
        """Look a contact up by id, id prefix (at least 4 hex digits) or exact name.

        Raises:
            LocalProtocolError: no such contact, or the reference is ambiguous.
        """
        return self._book.contact_view(self._book.resolve_contact(ref))

    def requests(self) -> list[ContactRequest]:
        """Incoming requests waiting for a decision, oldest first."""
        return self._book.request_views()

    def messages(self, ref: ContactRef, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation with a contact, oldest first."""
        return self._history.messages(self._book.resolve_contact(ref).hex(), limit=limit)

    def safety_number(self, ref: ContactRef) -> str:
        """The 60-digit safety number of our conversation with a contact (protocol.md §16)."""
        book = self._book
        return book.safety_number(book.contacts[book.resolve_contact(ref)].identity)

    def safety_qr_payload(self, ref: ContactRef) -> bytes:
        """The payload to show as a QR code for the other side to scan (protocol.md §16)."""
        from clientlib.crypto.fingerprint import qr_payload

        c = self._book.contacts[self._book.resolve_contact(ref)]
        return qr_payload(self.identity, IdentityPublicKey.from_bytes(c.identity))

    async def mark_verified(self, ref: ContactRef, verified: bool = True) -> Contact:
        """Record that the safety number was compared out of band."""
        book = self._book
        cid = book.resolve_contact(ref)
        async with book.lock:
            book.contacts[cid].verified = verified
            book.put_contact(cid)
            await book.save()
        return self.contact(cid.hex())

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Yield events until the client is closed (see :mod:`clientlib.client.types`).

        Events are buffered from the moment the client starts, so none is missed between
        entering the context and iterating.
        """
        while True:
            ev = await self._events.get()
            if ev is None:
                self._events.put_nowait(None)
                return
            yield ev

    async def sync(self) -> None:
        """Wait until every envelope that waited at the relay is processed and every
        deliverable message in the outbox is deposited. Bound it with ``asyncio.timeout``:
        while the relay is unreachable this waits."""
        await self._link.caught_up.wait()
        await self._outbox.drain()
        await self._groups.flush_all()
        while await self._groups.settle():  # group follow-ups (welcomes, sender keys)
            await self._outbox.drain()

    # --- public: invitations and requests -------------------------------------------------

    async def create_invitation(
        self, *, new_address: bool = False, relay: str | None = None
    ) -> Invitation:
        """Return an invitation to our contact address (creating the address if needed).

        ``new_address=True`` creates a separate address (with its own prekeys), so that two
        invitations cannot be linked by the relay and one can be deleted on its own.

        ``relay``: the relay URL the address lives on (default: the home relay). The client
        then also receives there (protocol.md §27.1): the pairwise mailboxes of contacts who
        come through this address are created on that relay, which gets a connection of its
        own (subscribe, reconnect, catch-up); while it cannot be reached only what lives on
        it waits. Its first address there is made on the first call; later calls return it.

        Raises:
            InvalidRelayUrl: ``relay`` is not a relay URL.
            TransportError: the relay could not be reached.
        """
        return await self._ops.create_invitation(new_address=new_address, relay=relay)

    def receive_relays(self) -> list[tuple[str, bool]]:
        """The relays we receive on, home first, each as ``(url, online)`` (protocol.md
        §27.1; ``online``: connected now)."""
        link = self._link
        out = [(self._book.relay_url, link.connected and link.online)]
        for relay in sorted(self._book.receive_relays() | set(link.receivers)):
            child = link.receivers.get(relay)
            out.append((relay, child is not None and child.connected and child.online))
        return out

    async def send_request(
        self,
        invitation: Invitation | str,
        *,
        intro: str | None = None,
        name: str | None = None,
        contact_name: str = "",
    ) -> Contact:
        """Send a contact request to the address of an invitation (a link or parsed).

        ``name`` is the display name we present (default: ours); ``contact_name`` what we call
        the contact locally (default: the name they send when accepting). The contact stays
        ``pending`` until the other side accepts; messages sent meanwhile are queued and
        delivered after acceptance.

        Raises:
            InvalidInvitation: not an invitation link.
            LocalProtocolError: the invitation is for another relay, or intro/name too long.
            BoundaryViolation: the request is larger than the address accepts.
            RelayRejected: ``AUTH``: the address no longer exists.
            KeyValidationError: the relay handed out keys that do not authenticate.
            TransportError: the relay could not be reached.
        """
        return await self._ops.send_request(
            invitation, intro=intro, name=name, contact_name=contact_name
        )

    async def accept_request(self, ref: RequestRef, *, name: str | None = None) -> Contact:
        """Accept a request: create our pairwise mailbox and tell the requester about it.

        ``name`` is what we call the contact locally (default: the name they sent).

        Raises:
            LocalProtocolError: no such request.
            TransportError: the relay could not be reached (nothing changed; retry).
        """
        return await self._ops.accept_request(ref, name=name)

    async def decline_request(self, ref: RequestRef) -> None:
        """Decline a request: its session is destroyed, the requester is not told, and the
        address refuses further requests under the requester's handle (protocol.md §22.3).

        A silent decline protects the decliner: the requester cannot tell a decline from a
        request still waiting, nor (afterwards) a ban from a deleted address.

        Raises:
            LocalProtocolError: no such request.
            TransportError: the ban could not be sent (not connected, relay unreachable or
                refusing): nothing changed; retry when connected.
        """
        await self._ops.decline_request(ref)

    async def remove_contact(self, ref: ContactRef) -> None:
        """Delete a contact: its mailbox at the relay, its session, its history."""
        await self._ops.remove_contact(ref)

    # --- public: consent, privacy, deletion, export -----------------------------------------

    async def block(self, ref: ContactRef) -> Contact:
        """Block a contact: revoke its send capability at the relay, which then refuses its
        deposits exactly as if our mailbox had been deleted (protocol.md §4.8).

        Raises:
            TransportError: the relay could not be reached (nothing changed; retry).
        """
        return await self._ops.set_blocked(ref, True)

    async def unblock(self, ref: ContactRef) -> Contact:
        """Restore a blocked contact's send capability."""
        return await self._ops.set_blocked(ref, False)

    async def set_privacy(
        self,
        ref: ContactRef,
        *,
        receipts: bool | None = None,
        typing: bool | None = None,
        media: bool | None = None,
        delivery_receipts: bool | None = None,
    ) -> Contact:
        """Change our privacy settings for one conversation and tell the contact.

        ``media=False`` means text only: the contact's client stops offering media and ours
        drops any that arrives (``content_refused`` warning). ``receipts`` (read),
        ``delivery_receipts`` and ``typing`` are reciprocal: each flows only while both
        sides have it on (protocol.md §22.11-§22.12).
        """
        return await self._ops.set_privacy(
            ref,
            receipts=receipts,
            typing=typing,
            media=media,
            delivery_receipts=delivery_receipts,
        )

    async def set_boundaries(self, boundaries: Boundaries) -> None:
        """Publish new boundaries on every contact address (and use them for new ones)."""
        await self._ops.set_boundaries(boundaries)

    def boundaries(self) -> Boundaries:
        """The boundaries this client publishes on its contact addresses."""
        return self._book.boundaries

    async def relay_holdings(self) -> list[tuple[str, MailboxInfo]]:
        """Ask the relay what it holds for each of our mailboxes (protocol.md §4.10).

        Returns:
            ``(label, info)`` pairs; ``label`` is ``address <n>`` or ``contact <id>``. A
            mailbox the relay no longer knows is left out (with a ``mailbox_lost`` warning).
        """
        out: list[tuple[str, MailboxInfo]] = []
        for label, rid, owner in self._book.mailboxes():
            t = self._link.own_transport(self._book.recv_relay(rid))
            try:
                out.append((label, await t.mailbox_info(credential(rid, owner))))
            except RelayRejected as exc:
                if exc.code != "AUTH":
                    raise
                # The relay holds nothing for it (expired or deleted): nothing to list.
                self._emit(ClientWarning("mailbox_lost", f"{label}: relay answered AUTH"))
        return out

    async def register_push(self, url: str, token: bytes | None = None) -> bytes:
        """Have the relay wake ``url`` (a UnifiedPush endpoint) when a message arrives while
        we are not connected: an HTTP POST whose whole body is ``token`` (32 bytes; random if
        None), on every mailbox of ours (protocol.md §28). Returns the token.

        Raises:
            LocalProtocolError: a bad ``token`` or ``url`` (see :meth:`RelayAPI.set_push`).
            RelayRejected: ``MALFORMED`` (the relay will not POST to ``url``).
            TransportError: the relay could not be reached.
        """
        tok, _ = await register_push(self._mailbox_transport, self._book, url, token)
        return tok

    def _mailbox_transport(self, rid: bytes) -> RelayAPI:
        """The transport of the relay one of our mailboxes is on (§27.1)."""
        return self._link.own_transport(self._book.recv_relay(rid))

    async def unregister_push(self) -> None:
        """Stop push wake-ups on every mailbox of ours (protocol.md §28).

        Raises:
            TransportError: the relay could not be reached.
        """
        await unregister_push(self._mailbox_transport, self._book)

    async def delete_account(self) -> None:
        """Delete every mailbox of ours at the relay (with its prekeys, capabilities and
        stored envelopes), then wipe the local keystore and history, and close.

        Deleted mailboxes answer like mailboxes that never existed. If the relay cannot be
        reached, nothing local is wiped (retry later): a wiped keystore could no longer prove
        ownership of what the relay still holds.

        Raises:
            TransportError: the relay could not be reached; local data is untouched.
        """
        for _, rid, owner in self._book.mailboxes():
            t = self._link.own_transport(self._book.recv_relay(rid))
            try:
                await t.delete_mailbox(credential(rid, owner))
            except RelayRejected as exc:
                if exc.code != "AUTH":  # AUTH: already gone (expired or deleted before)
                    raise
        async with self._book.lock:
            self._history.wipe()
            self._book.wipe()
        self._close_grace = 0
        await self.close()

    def export(self, path: str | os.PathLike[str]) -> None:
        """Write a readable JSON archive of every conversation (for records, or as evidence
        of abuse) to ``path`` (created with mode 0600; an existing file is not overwritten).

        The archive holds: our identity fingerprint, every contact (name, state, safety
        number, verified, blocked, settings) with its messages (direction, text, times,
        delivery state), and pending requests (name, intro, safety number). No key material.

        Raises:
            FileExistsError: ``path`` exists.
        """
        from clientlib.crypto.fingerprint import identity_fingerprint

        doc = export_document(
            exported_at=self._now(),
            relay=self._book.relay_url,
            fingerprint=identity_fingerprint(self.identity),
            contacts=self.contacts(),
            messages=self.messages,
            requests=self.requests(),
        )
        write_new_private(path, doc)

    def _linked_contents(self) -> BackupContents | None:
        return self._linked.contents if self._linked is not None else None

    def _seed(self) -> bytes | None:
        """The identity seed of a restore or a link (None: a new identity)."""
        c = self._restore or self._linked_contents()
        return c.seed if c is not None else None

    # --- public: abuse reports ---------------------------------------------------------------

    async def report(self, message: StoredMessage, reason: str, *, note: str | None = None) -> str:
        """Report a received message to the relay's moderators (protocol.md §4.11, §15.4,
        §15.5).

        The report reveals to the relay operator this message in full, both identity keys
        of the conversation and the source our mailbox accepted it on; nothing about any
        other message. The relay checks, without trusting us, that this exact message was
        delivered to our mailbox (its tag ``ft``), that it is what the sender committed to
        (``fc``), and, by the sender's AMF signature (§15.5), that the holder of the
        contact's identity key made it for our identity key. That last proof convinces the
        relay's moderator only (anyone else could be shown a signature we made ourselves),
        and it does not hold against a relay that colludes with the recipient, nor for a
        stolen identity key; it says which *key*, never which person (§15.4.5, §15.5.11).
        ``reason`` is one of ``harassment``, ``threats``, ``non_consensual_content``,
        ``minor_safety``, ``spam``, ``impersonation``, ``other``.

        A file the message carries is revealed too (§25.6): fetched again from the relay and
        verified, then sent inside the report (up to 48 KiB) or streamed after it (larger);
        the relay keeps it only if it is the file the sender committed to.

        Returns:
            The report id (hex); :class:`ReportResolved` arrives when a moderator acts.

        Raises:
            LocalProtocolError: not a received message of ours, it carries no relay tag, it
                was stored before revision 5 without an AMF signature (not reportable), or
                its file is an opened view-once file (no longer held).
            RelayRejected: ``FRANKING``, ``EXPIRED`` (the report window closed), ``DUPLICATE``,
                ``QUOTA`` (too many reports today), ``MALFORMED`` (unknown reason), ``AUTH``
                (the file's blob expired).
            AttachmentCorrupt: the file did not verify (nothing of it was kept).
        """
        media = self._media
        cur = media.reportable(message)
        if cur is None or cur.size <= MAX_REPORTED_FILE:
            attachments = await media.report_attachments(message)
            return await self._reports.report(message, reason, note=note, attachments=attachments)
        # A larger file (protocol.md §25.6): reported by its hash, then streamed to the relay.
        report_id = await self._reports.report(
            message, reason, note=note, attachment_hashes=[cur.plaintext_hash]
        )
        c = self._book.contacts.get(bytes.fromhex(message.contact_id))
        await media.reveal(cur, bytes.fromhex(report_id), c.rr if c is not None else None)
        return report_id

    async def report_request(
        self, request: RequestRef, reason: str, *, note: str | None = None
    ) -> str:
        """Report a contact request (its display name and intro) to the relay's moderators
        (protocol.md §22.8). Report before :meth:`decline_request`: declining deletes the
        request and its evidence.

        The relay verifies, as for :meth:`report`, that this request was delivered to our
        contact address with the requester's handle, that its content is what the
        requester committed to, and (AMF, §15.5) that the requester's identity key made it
        for ours. The report reveals the whole request to the operator: the name and intro,
        the requester's identity key, its handle on our address, and the send id and
        capability of the mailbox it created for our answer (so the operator can link that
        mailbox to the request). It cannot prove that the display name is true (the
        requester chose it) nor who is behind the identity key.

        Returns:
            The report id (hex); :class:`ReportResolved` arrives when a moderator acts.

        Raises:
            LocalProtocolError: no such request, its address was deleted, or it was stored
                before requests kept report evidence (revision 5).
            RelayRejected: as for :meth:`report`.
        """
        return await self._reports.report_request(request, reason, note=note)

    def reports(self) -> list[tuple[str, str, str]]:
        """Our reports: ``(report id, contact id, status)``, status ``open`` or ``resolved``."""
        return self._reports.listing()

    def report_details(self) -> list[ReportDetails]:
        """Our reports with their reason and, once resolved, the moderator's action, oldest
        first (:meth:`reports` is the short form)."""
        return self._reports.details()

    async def check_reports(self) -> None:
        """Ask the relay about every open report; emits :class:`ReportResolved` for each
        that a moderator resolved. Runs by itself on every connect."""
        await self._reports.check()

    # --- public: messages -----------------------------------------------------------------

    async def send(self, ref: ContactRef, text: str) -> StoredMessage:
        """Send a text message. Returns once it is sealed and durably queued; delivery to
        the relay follows (``DeliveryChanged`` events), in order, retried until it succeeds.

        Raises:
            LocalProtocolError: unknown contact, or the text is too long.
        """
        return await self._ops.send(ref, text)

    # --- public: conversation features (protocol.md §22.10-§22.13) -----------------------

    async def mark_read(self, ref: ContactRef, message_ids: list[str] | None = None) -> int:
        """The user saw these received messages (default: every one not marked yet).

        Starts the disappearing timer of each (expiry counted from first display) and owes
        the contact a read receipt if both sides send them; the receipt leaves after a
        random delay (``config.receipt_delay``) or inside our next message to them.

        Returns:
            How many messages were newly marked.
        """
        return await self._conv.mark_read(ref, message_ids)

    async def typing(self, ref: ContactRef, active: bool = True) -> bool:
        """Tell the contact we are typing (``active``) or stopped. Call it as often as you
        like (every keystroke): a start, keep-alives at most every 5 s and a stop leave, as
        online-only envelopes the relay never stores, and only while both sides have
        ``typing`` on. Best effort: never raises for the network.

        Returns:
            Whether an indicator left now.
        """
        return await self._conv.typing(ref, active)

    async def set_disappearing(self, ref: ContactRef, seconds: int) -> None:
        """Set the conversation's disappearing-message timer (``0``: off) for both sides;
        both get :class:`DisappearingChanged`. Messages sent afterwards (by either side)
        are removed from both histories ``seconds`` after sending (ours) or after first
        display (theirs), and from the relay if still undelivered.

        Raises:
            LocalProtocolError: unknown contact, or ``seconds`` out of 0..366 days.
        """
        await self._conv.set_disappearing(ref, seconds)

    async def unsend(self, ref: ContactRef, message_id: str) -> StoredMessage:
        """Delete one of our messages for everyone: the contact's client removes its
        content and shows it as deleted; in both histories the text is crypto-shredded.
        A message still in our outbox never leaves.

        Raises:
            LocalProtocolError: not a message of ours in this conversation.
        """
        return await self._conv.unsend(ref, message_id)

    async def edit(self, ref: ContactRef, message_id: str, text: str) -> StoredMessage:
        """Replace the text of one of our messages (both histories keep the latest text,
        marked edited).

        Raises:
            LocalProtocolError: not a message of ours, or the text is too long.
        """
        return await self._conv.edit(ref, message_id, text)

    async def react(
        self, ref: ContactRef, message_id: str, emoji: str, *, direction: Direction = "in"
    ) -> StoredMessage:
        """React to a message (``direction``: ``in`` theirs, ``out`` ours) with one emoji,
        replacing our earlier reaction; ``""`` removes it.

        Raises:
            LocalProtocolError: no such message, or the emoji is longer than 32 bytes.
        """
        return await self._conv.react(ref, message_id, emoji, direction=direction)

    # --- internals ------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._config.clock())

    def _emit(self, ev: ClientEvent) -> None:
        if isinstance(ev, MessageReceived | ContactAdded):
            # A reply is likely: have its AMF signature ready (protocol.md §15.5.5).
            self._ops.warm(bytes.fromhex(ev.contact.id))
        self._events.put_nowait(ev)

    def __repr__(self) -> str:
        return f"<Client relay={self._book.relay_url!r} contacts={len(self._book.contacts)}>"
