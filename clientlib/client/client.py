"""The :class:`Client`: end-to-end encrypted messaging for applications, in a few lines.

::

    async with Client.create("alice.keystore", b"passphrase", relay_url=URL) as alice:
        invitation = await alice.create_invitation()
        print(invitation.link)
        async for event in alice.events():
            if isinstance(event, RequestReceived):
                contact = await alice.accept_request(event.request)
                await alice.send(contact, "hello")

Delivery guarantees (protocol.md §23.2): an incoming envelope is acknowledged to the relay
only after the message is in the history store and the session state is in the keystore,
both durably; redeliveries are dropped by envelope id and by message id; outgoing messages
are sealed and written to the keystore's outbox before :meth:`Client.send` returns, and the
outbox is flushed in order, with the same envelope ids on retry, whenever the relay is
reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypedDict, Unpack

import aiohttp
import msgpack

from clientlib.client.content import (
    MAX_INTRO_BYTES,
    MAX_NAME_BYTES,
    MAX_TEXT_BYTES,
    MESSAGE_ID_SIZE,
    Accept,
    ContactRequestContent,
    ConversationSettings,
    TextMessage,
    decode_content,
)
from clientlib.client.history import EncryptedFileHistory, HistoryStore, MemoryHistory
from clientlib.client.invite import (
    ADDRESS_KEY_SIZE,
    Invitation,
    open_bundle,
    seal_item,
    seal_static,
)
from clientlib.client.state import (
    STATE_VERSION,
    AddressRecord,
    ContactRecord,
    OutboxRecord,
    RequestRecord,
    decode_all,
    remember,
)
from clientlib.client.types import (
    CaughtUp,
    ClientEvent,
    ClientWarning,
    ConnectionChanged,
    Contact,
    ContactAdded,
    ContactRequest,
    DeliveryChanged,
    DeliveryState,
    MessageReceived,
    PrivacySettings,
    ReportResolved,
    RequestReceived,
    StoredMessage,
    WarningKind,
)
from clientlib.crypto.fingerprint import safety_number
from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair
from clientlib.crypto.primitives import (
    ed25519_expand_seed,
    ed25519_public_from_seed,
    ed25519_sign,
    hkdf,
    hmac_sha256,
)
from clientlib.crypto.primitives import sha256 as _sha256
from clientlib.errors import (
    DecryptionError,
    KeyValidationError,
    LocalProtocolError,
    MessagingError,
    RelayRejected,
    SessionError,
    TransportError,
    WireError,
)
from clientlib.keystore import FileKeystore, InMemoryKeystore, Keystore
from clientlib.keystore.file import MEMLIMIT_MODERATE, OPSLIMIT_MODERATE, _test_kdf_allowed
from clientlib.session import Session, accept, initiate, open_envelope
from clientlib.transport import (
    CaughtUp as TCaughtUp,
)
from clientlib.transport import (
    Delivered,
    Disconnected,
    HTTPTransport,
    MailboxCredential,
    Reconnected,
    SubscriptionLost,
    WebSocketTransport,
)
from clientlib.wire.codec import decode_map, unpack_strict
from clientlib.wire.frames import Boundaries, MailboxInfo, StoredEnvelope
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT
from clientlib.wire.pow import capability_hash
from clientlib.wire.pow import solve as solve_pow

__all__ = ["BoundaryViolation", "Client", "ClientOptions", "ContactRef", "RequestRef"]

#: Boundaries of the contact addresses a client creates unless told otherwise: requests up to
#: the 4 KiB class, no attachments, 100 a day, and a light proof of work (about 0.1 s).
DEFAULT_BOUNDARIES = Boundaries(size=4096, att=0, day=100, pow=12)

log = logging.getLogger("clientlib.client")

#: One-time prekey items uploaded per address, and the level that triggers a refill.
PREKEY_BATCH = 24
PREKEY_LOW_WATER = 8
_ARGON2: dict[str, tuple[int, int]] = {
    "moderate": (OPSLIMIT_MODERATE, MEMLIMIT_MODERATE),
    "interactive": (2, 64 << 20),
    "minimum": (1, 8 << 10),  # the test suite's only (refused unless _test_kdf_allowed())
}


class BoundaryViolation(LocalProtocolError):
    """The contact address's published boundaries do not allow this request (protocol.md §4.9);
    nothing was sent."""


ContactRef = Contact | str
RequestRef = ContactRequest | str
TransportMode = Literal["websocket", "http"]


_TRANSIENT = frozenset({"UNAVAILABLE", "STORAGE_FULL", "LIMIT", "TIMEOUT", "INTERNAL"})


def _bnd_list(b: Boundaries) -> list[int]:
    return [b.size, b.att, b.day, b.pow]


def _settings(v: list[int]) -> PrivacySettings:
    return PrivacySettings(receipts=bool(v[0]), typing=bool(v[1]), media=bool(v[2]))


def _jitter() -> float:
    """A delay factor in [0.5, 1.5): spreads reconnecting clients (not a secret)."""
    return 0.5 + random.random()  # noqa: S311


class ClientOptions(TypedDict, total=False):
    """Keyword options of :meth:`Client.create` and :meth:`Client.open`."""

    history: HistoryStore | None
    connect: bool
    transport: TransportMode
    spread: bool
    poll_interval: float
    request_timeout: float
    close_grace: float
    boundaries: Boundaries
    kdf_strength: str
    rng: RNG
    clock: Callable[[], float]


class _Source:
    """Where an incoming envelope came from, so that it can be acknowledged there."""

    __slots__ = ("http", "ws")

    def __init__(self, ws: WebSocketTransport | None, http: HTTPTransport | None) -> None:
        self.ws = ws
        self.http = http


class Client:
    """An end-to-end encrypted messaging client bound to one keystore and one relay.

    Build one with :meth:`create` (new identity) or :meth:`open` (existing keystore) and use
    it as an async context manager; entering opens the keystore (Argon2id, about a second at
    the default strength), opens the history, connects to the relay, renews every
    subscription and flushes the outbox. Pass ``connect=False`` to work offline (list
    contacts, read history, queue messages).

    Args (keyword-only, shared by :meth:`create` and :meth:`open`):
        history: a :class:`HistoryStore`; default: an encrypted file next to the keystore.
        transport: ``"websocket"`` (push, default) or ``"http"`` (polling fallback for
            networks that block WebSockets).
        spread: one connection per mailbox, and deposits over fresh HTTP connections, so no
            single connection links our mailboxes (costs one socket per contact).
        poll_interval: seconds between polls in HTTP mode.
        request_timeout: seconds one relay request may take.
        close_grace: seconds :meth:`close` waits for queued messages to leave (0: none).
        boundaries: the boundaries of contact addresses this client creates.
        rng: randomness (``os.urandom``); clock: seconds since the epoch (``time.time``).
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
        history: HistoryStore | None = None,
        connect: bool = True,
        transport: TransportMode = "websocket",
        spread: bool = False,
        poll_interval: float = 2.0,
        request_timeout: float = 10.0,
        close_grace: float = 2.0,
        boundaries: Boundaries = DEFAULT_BOUNDARIES,
        kdf_strength: str = "moderate",
        rng: RNG = os.urandom,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if create and not relay_url:
            raise LocalProtocolError("a relay_url is needed to create a client")
        if kdf_strength not in _ARGON2 or (kdf_strength == "minimum" and not _test_kdf_allowed()):
            raise ValueError("kdf_strength must be moderate or interactive")
        if transport not in ("websocket", "http"):
            raise ValueError("transport must be 'websocket' or 'http'")
        self._path = Path(keystore_path) if keystore_path is not None else None
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self._create = create
        self._relay_override = relay_url
        self._name_init = name
        self._history_arg = history
        self._want_connect = connect
        self._mode: TransportMode = transport
        self._spread = spread
        self._poll_interval = poll_interval
        self._timeout = request_timeout
        self._close_grace = close_grace
        self._boundaries = boundaries
        self._kdf = _ARGON2[kdf_strength]
        self._rng = rng
        self._clock = clock
        # Filled by _start.
        self._ks: Keystore | None = None
        self._history: HistoryStore = MemoryHistory()
        self._identity: IdentityKeyPair | None = None
        self._relay_url = ""
        self._name = ""
        self._addresses: dict[bytes, AddressRecord] = {}
        self._contacts: dict[bytes, ContactRecord] = {}
        self._requests: dict[bytes, RequestRecord] = {}
        self._by_rid: dict[bytes, tuple[str, bytes]] = {}
        self._sn_cache: dict[bytes, str] = {}
        self._dirty = False
        self._lazy_save: asyncio.Task[None] | None = None
        self._outbox_seq = 0
        # Connection state.
        self._http_session: aiohttp.ClientSession | None = None
        self._deposit_session: aiohttp.ClientSession | None = None
        self._ws: WebSocketTransport | None = None
        self._ws_by_rid: dict[bytes, WebSocketTransport] = {}
        self._http: HTTPTransport | None = None
        self._depositor: HTTPTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbox: asyncio.Queue[tuple[_Source, bytes, StoredEnvelope | None]] = asyncio.Queue()
        self._events: asyncio.Queue[ClientEvent | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._outbox_wake = asyncio.Event()
        self._idle_outbox = asyncio.Event()
        self._pending_caught_up: set[bytes] = set()
        self._caught_up = asyncio.Event()
        self._online = False
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
        **options: Unpack[ClientOptions],
    ) -> Self:
        """A client with a new identity, stored in a new keystore at ``keystore_path``
        (``None``: in memory only, gone when closed). Created on entering the context.

        Raises (on entering):
            KeystoreExists: a keystore already exists at the path.
            WeakPassphrase: the passphrase is too short or guessable (protocol.md §23.4).
        """
        return cls(
            keystore_path,
            passphrase,
            create=True,
            relay_url=relay_url,
            name=name,
            **options,
        )

    @classmethod
    def open(
        cls,
        keystore_path: str | os.PathLike[str],
        passphrase: bytes | str,
        *,
        relay_url: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> Self:
        """A client for an existing keystore (the relay URL is remembered in it).

        Raises (on entering):
            KeystoreNotFound, WrongPassphrase, CorruptKeystore, UnsupportedKeystoreVersion,
            KeystoreLocked: see :mod:`clientlib.keystore`; nothing is changed on failure.
        """
        return cls(
            keystore_path,
            passphrase,
            create=False,
            relay_url=relay_url,
            **options,
        )

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
        """Open the keystore and history, then connect (unless ``connect=False``)."""
        if self._started:
            raise LocalProtocolError("a client can be started only once")
        self._started = True
        await asyncio.to_thread(self._open_state)
        try:
            if self._want_connect:
                await self.connect()
        except BaseException:
            await self.close()
            raise

    def _open_state(self) -> None:
        ks: Keystore
        if self._create:
            if self._path is None:
                ks = InMemoryKeystore()
            else:
                ops, mem = self._kdf
                ks = FileKeystore.create(
                    self._path, self._passphrase, rng=self._rng, opslimit=ops, memlimit=mem
                )
            try:
                identity = IdentityKeyPair.generate(self._rng)
                ks.put("meta", b"identity", identity.private_bytes())
                ks.put("meta", b"relay", (self._relay_override or "").encode())
                ks.put("meta", b"history-key", self._rng(32))
                ks.put("meta", b"next-key-id", struct.pack(">I", 1))
                ks.put("meta", b"name", (self._name_init or "").encode())
                ks.put("meta", b"state-version", bytes((STATE_VERSION,)))
                ks.save()
            except BaseException:
                if isinstance(ks, FileKeystore):
                    ks.wipe()
                raise
        else:
            assert self._path is not None
            ks = FileKeystore.open(self._path, self._passphrase, rng=self._rng)
        self._passphrase = b""
        try:
            self._load(ks)
        except BaseException:
            ks.close()
            raise

    def _load(self, ks: Keystore) -> None:
        from clientlib.keystore.errors import CorruptKeystore

        version = ks.get("meta", b"state-version")
        seed = ks.get("meta", b"identity")
        if version is None or seed is None:
            raise CorruptKeystore("the keystore holds no blindrelay client state")
        if version[0] > STATE_VERSION:
            from clientlib.keystore.errors import UnsupportedKeystoreVersion

            raise UnsupportedKeystoreVersion(version[0], STATE_VERSION)
        self._identity = IdentityKeyPair(seed)
        relay = self._relay_override or (ks.get("meta", b"relay") or b"").decode()
        if not relay:
            raise LocalProtocolError("no relay URL stored; pass relay_url")
        if self._relay_override and not self._create:
            ks.put("meta", b"relay", relay.encode())
        self._relay_url = relay.rstrip("/")
        self._name = (ks.get("meta", b"name") or b"").decode()
        raw_bnd = ks.get("meta", b"boundaries")
        if raw_bnd is not None:
            self._boundaries = Boundaries.from_map(decode_map(raw_bnd, max_size=256)[1])
        self._addresses = decode_all(AddressRecord, ks.items("addresses"))
        self._contacts = decode_all(ContactRecord, ks.items("contacts"))
        self._requests = decode_all(RequestRecord, ks.items("requests"))
        for cid, c in self._contacts.items():  # drop over-age skipped keys on open (§12.3)
            c.session = Session.from_record(c.session, now=self._now()).to_record().to_bytes()
            ks.put("contacts", cid, c.to_bytes())
        outbox = ks.items("outbox")
        self._outbox_seq = struct.unpack(">Q", outbox[-1][0])[0] if outbox else 0
        for aid, a in self._addresses.items():
            self._by_rid[a.rid] = ("address", aid)
        for cid, c in self._contacts.items():
            self._by_rid[c.rid] = ("contact", cid)
        if self._history_arg is not None:
            self._history = self._history_arg
        elif self._path is not None:
            self._history = EncryptedFileHistory(
                self._path.with_name(self._path.name + ".history"), ks, rng=self._rng
            )
        self._ks = ks

    async def connect(self) -> None:
        """Connect to the relay, subscribe every mailbox, start flushing the outbox.

        Raises:
            TransportError: the relay could not be reached.
        """
        if self._http_session is not None:
            return
        self._http_session = aiohttp.ClientSession()
        self._deposit_session = (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            if self._spread
            else self._http_session
        )
        self._http = HTTPTransport(
            self._http_session, self._relay_url, request_timeout=self._timeout
        )
        if self._spread or self._mode == "http":
            self._depositor = HTTPTransport(
                self._deposit_session, self._relay_url, request_timeout=self._timeout
            )
        if self._mode == "websocket" and not self._spread:
            self._ws = await self._open_ws(self._http_session)
        self._online = True
        self._pending_caught_up = set(self._by_rid)
        if not self._pending_caught_up:
            self._caught_up.set()
        for rid in list(self._by_rid):
            try:
                await self._subscribe(rid)
            except RelayRejected as exc:  # deleted or expired at the relay
                self._emit(ClientWarning("mailbox_lost", f"relay answered {exc.code}"))
                self._mark_caught_up(rid)
        if self._mode == "http":
            self._spawn(self._poll_loop())
        self._spawn(self._process_loop())
        self._spawn(self._outbox_loop())
        self._spawn(self._prekey_maintenance())
        self._outbox_wake.set()

    async def _open_ws(self, session: aiohttp.ClientSession) -> WebSocketTransport:
        ws = WebSocketTransport(session, self._relay_url, request_timeout=self._timeout)
        await ws.__aenter__()
        self._spawn(self._read_ws(ws))
        return ws

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("client task failed: %s", type(task.exception()).__name__)

    async def close(self) -> None:
        """Stop, disconnect, and close the keystore and history. Idempotent."""
        if self._closed:
            return
        if self._http_session is not None and self._ready_outbox() and self._close_grace > 0:
            # Give queued messages a moment to leave; whatever stays is sent next time.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._close_grace):
                    await self.sync()
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        transports = [self._ws, *self._ws_by_rid.values()]
        for t in transports:
            if t is not None:
                with contextlib.suppress(Exception):
                    await t.close()
        for s in {self._http_session, self._deposit_session} | {
            getattr(t, "_session", None) for t in self._ws_by_rid.values()
        }:
            if isinstance(s, aiohttp.ClientSession):
                await s.close()
        if self._lazy_save is not None:
            self._lazy_save.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lazy_save
        self._events.put_nowait(None)
        if self._ks is not None:
            if self._dirty:
                with contextlib.suppress(MessagingError, OSError):
                    await asyncio.to_thread(self._ks.save)
            self._ks.close()
        self._history.close()

    # --- public: identity, contacts, history ----------------------------------------------

    @property
    def identity(self) -> IdentityPublicKey:
        """Our identity public key."""
        return self._id().public

    @property
    def relay_url(self) -> str:
        return self._relay_url

    @property
    def name(self) -> str:
        """Our display name (sent with requests and acceptances; may be empty)."""
        return self._name

    @property
    def history(self) -> HistoryStore:
        return self._history

    def contacts(self) -> list[Contact]:
        """Every contact, oldest first."""
        recs = sorted(self._contacts.items(), key=lambda kv: (kv[1].created, kv[0]))
        return [self._contact_view(cid, c) for cid, c in recs]

    def contact(self, ref: ContactRef) -> Contact:
        """Look a contact up by id, id prefix (at least 4 hex digits) or exact name.

        Raises:
            LocalProtocolError: no such contact, or the reference is ambiguous.
        """
        cid = self._resolve_contact(ref)
        return self._contact_view(cid, self._contacts[cid])

    def requests(self) -> list[ContactRequest]:
        """Incoming requests waiting for a decision, oldest first."""
        recs = sorted(self._requests.items(), key=lambda kv: (kv[1].received, kv[0]))
        return [self._request_view(rid, r) for rid, r in recs]

    def messages(self, ref: ContactRef, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation with a contact, oldest first."""
        return self._history.messages(self._resolve_contact(ref).hex(), limit=limit)

    def safety_number(self, ref: ContactRef) -> str:
        """The 60-digit safety number of our conversation with a contact (protocol.md §16)."""
        return self._safety_number(self._contacts[self._resolve_contact(ref)].identity)

    def safety_qr_payload(self, ref: ContactRef) -> bytes:
        """The payload to show as a QR code for the other side to scan (protocol.md §16)."""
        from clientlib.crypto.fingerprint import qr_payload

        c = self._contacts[self._resolve_contact(ref)]
        return qr_payload(self.identity, IdentityPublicKey.from_bytes(c.identity))

    async def mark_verified(self, ref: ContactRef, verified: bool = True) -> Contact:
        """Record that the safety number was compared out of band."""
        cid = self._resolve_contact(ref)
        async with self._lock:
            self._contacts[cid].verified = verified
            self._put_contact(cid)
            await self._save()
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
        await self._caught_up.wait()
        while self._ready_outbox():
            self._idle_outbox.clear()
            self._outbox_wake.set()
            await self._idle_outbox.wait()

    # --- public: invitations and requests -------------------------------------------------

    async def create_invitation(self, *, new_address: bool = False) -> Invitation:
        """Return an invitation to our contact address (creating the address if needed).

        ``new_address=True`` creates a separate address (with its own prekeys), so that two
        invitations cannot be linked by the relay and one can be deleted on its own.

        Raises:
            TransportError: the relay could not be reached.
        """
        if self._addresses and not new_address:
            aid, a = next(iter(sorted(self._addresses.items(), key=lambda kv: kv[1].created)))
            return Invitation.for_identity(self._relay_url, a.sid, a.key, self.identity)
        owner = self._rng(32)
        rid, sid = await self._create_mailbox(owner, kind="addr", boundaries=self._boundaries)
        async with self._lock:
            spk = self._new_prekey(PreKeyKind.X25519_SIGNED)
            lr = self._new_prekey(PreKeyKind.MLKEM_LAST_RESORT)
            aid = self._rng(16)
            a = AddressRecord(
                rid=rid,
                sid=sid,
                owner=owner,
                key=self._rng(ADDRESS_KEY_SIZE),
                spk=spk.key_id,
                lr=lr.key_id,
                created=self._now(),
                bnd=_bnd_list(self._boundaries),
            )
            static = self._static_blob(a)
            items = self._new_items(a, PREKEY_BATCH)
            self._addresses[aid] = a
            self._by_rid[rid] = ("address", aid)
            self._put_address(aid)
            await self._save()
        left, _ = await self._transport().put_prekeys(
            self._cred(rid, owner), static=static, one_time=items, replace=True
        )
        async with self._lock:
            a.left = left
            self._put_address(aid)
            await self._save()
        await self._subscribe(rid)
        return Invitation.for_identity(self._relay_url, sid, a.key, self.identity)

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
            RelayRejected: ``AUTH``: the address no longer exists.
            KeyValidationError: the relay handed out keys that do not authenticate.
            TransportError: the relay could not be reached.
        """
        inv = invitation if isinstance(invitation, Invitation) else Invitation.parse(invitation)
        if inv.relay_url.rstrip("/") != self._relay_url:
            raise LocalProtocolError(
                "the invitation is for another relay; this client uses " + self._relay_url
            )
        name = self._name if name is None else name
        if len(name.encode()) > MAX_NAME_BYTES or len((intro or "").encode()) > MAX_INTRO_BYTES:
            raise LocalProtocolError("name or intro too long")
        transport = self._transport()
        bnd = await transport.boundaries(inv.sid)
        static, item = await transport.fetch_bundle(inv.sid)
        bundle = open_bundle(inv, static, item)
        if bundle.identity == self.identity:
            raise LocalProtocolError("this is our own invitation")
        now = self._now()
        # Check the published size boundary with a dry run (content sizes do not depend on
        # the ids inside), before creating anything at the relay.
        probe = ContactRequestContent(
            reply=bytes(16), cap=bytes(32), name=name or None, intro=intro or None
        ).encode()
        _, dry = initiate(self._id(), bundle, probe, rng=self._rng, now=now)
        if len(dry.ct) > bnd.size:
            raise BoundaryViolation(
                f"the address accepts requests up to {bnd.size} bytes; shorten the intro"
            )
        owner = self._rng(32)
        cap = self._rng(32)
        rid, sid = await self._create_pairwise(owner, cap)
        content = ContactRequestContent(reply=sid, cap=cap, name=name or None, intro=intro or None)
        session, sealed = initiate(self._id(), bundle, content.encode(), rng=self._rng, now=now)
        cid = self._rng(16)
        async with self._lock:
            self._contacts[cid] = ContactRecord(
                name=contact_name,
                state="pending",
                identity=bytes(bundle.identity),
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=owner,
                send=None,
                created=now,
                mycap=cap,
            )
            self._by_rid[rid] = ("contact", cid)
            self._put_contact(cid)
            self._queue(
                OutboxRecord(
                    cid,
                    self._rng(16),
                    sealed.ct,
                    sealed.fc,
                    inv.sid,
                    hdl=self._handle(inv.sid),
                    pw=bnd.pow,
                )
            )
            await self._save()
        await self._subscribe(rid)
        self._outbox_wake.set()
        return self._contact_view(cid, self._contacts[cid])

    async def accept_request(self, ref: RequestRef, *, name: str | None = None) -> Contact:
        """Accept a request: create our pairwise mailbox and tell the requester about it.

        ``name`` is what we call the contact locally (default: the name they sent).

        Raises:
            LocalProtocolError: no such request.
            TransportError: the relay could not be reached (nothing changed; retry).
        """
        qid = self._resolve_request(ref)
        req = self._requests[qid]
        owner = self._rng(32)
        cap = self._rng(32)
        rid, sid = await self._create_pairwise(owner, cap)
        async with self._lock:
            if qid not in self._requests:
                raise LocalProtocolError("the request was already handled")
            session = Session.from_record(req.session)
            content = Accept(reply=sid, cap=cap, name=self._name or None).encode()
            sealed = session.encrypt(content, rng=self._rng, now=self._now())
            cid = self._rng(16)
            self._contacts[cid] = ContactRecord(
                name=name if name is not None else (req.name or ""),
                state="accepted",
                identity=req.identity,
                session=session.to_record().to_bytes(),
                rid=rid,
                sid=sid,
                owner=owner,
                send=req.reply,
                created=self._now(),
                mycap=cap,
                sendcap=req.cap,
            )
            self._by_rid[rid] = ("contact", cid)
            del self._requests[qid]
            self._ks_().delete("requests", qid)
            self._put_contact(cid)
            self._queue(
                OutboxRecord(cid, self._rng(16), sealed.ct, sealed.fc, req.reply, cap=req.cap)
            )
            await self._save()
        await self._subscribe(rid)
        self._outbox_wake.set()
        contact = self._contact_view(cid, self._contacts[cid])
        self._emit(ContactAdded(contact))
        return contact

    async def decline_request(self, ref: RequestRef) -> None:
        """Decline a request: its session is destroyed, the requester is not told, and the
        address refuses further requests under the requester's handle (protocol.md §22.3).

        A silent decline protects the decliner: the requester cannot tell a decline from a
        request still waiting, nor (afterwards) a ban from a deleted address.
        """
        qid = self._resolve_request(ref)
        req = self._requests[qid]
        a = self._addresses.get(req.address)
        if req.hdl is not None and a is not None:
            try:
                await self._transport().ban(self._cred(a.rid, a.owner), add=[req.hdl])
            except TransportError as exc:  # declined locally all the same
                log.debug("ban postponed: %s", type(exc).__name__)
        async with self._lock:
            self._requests.pop(qid, None)
            self._ks_().delete("requests", qid)
            await self._save()

    async def remove_contact(self, ref: ContactRef) -> None:
        """Delete a contact: its mailbox at the relay, its session, its history."""
        cid = self._resolve_contact(ref)
        c = self._contacts[cid]
        with contextlib.suppress(RelayRejected):
            await self._delete_mailbox(c.rid, c.owner)
        async with self._lock:
            self._contacts.pop(cid, None)
            self._by_rid.pop(c.rid, None)
            self._ks_().delete("contacts", cid)
            for key, raw in self._ks_().items("outbox"):
                if OutboxRecord.from_bytes(raw).contact == cid:
                    self._ks_().delete("outbox", key)
            self._history.forget(cid.hex())  # under the lock: it saves the keystore too
            await self._save()

    # --- public: consent, privacy, deletion, export -----------------------------------------

    async def block(self, ref: ContactRef) -> Contact:
        """Block a contact: revoke its send capability at the relay, which then refuses its
        deposits exactly as if our mailbox had been deleted (protocol.md §4.8).

        Raises:
            TransportError: the relay could not be reached (nothing changed; retry).
        """
        return await self._set_blocked(ref, True)

    async def unblock(self, ref: ContactRef) -> Contact:
        """Restore a blocked contact's send capability."""
        return await self._set_blocked(ref, False)

    async def _set_blocked(self, ref: ContactRef, blocked: bool) -> Contact:
        cid = self._resolve_contact(ref)
        c = self._contacts[cid]
        h = capability_hash(c.sid, c.mycap)
        cred = self._cred(c.rid, c.owner)
        if blocked:
            await self._transport().set_caps(cred, remove=[h])
        else:
            await self._transport().set_caps(cred, add=[h])
        async with self._lock:
            c.blocked = blocked
            self._put_contact(cid)
            await self._save()
        return self._contact_view(cid, c)

    async def set_privacy(
        self,
        ref: ContactRef,
        *,
        receipts: bool | None = None,
        typing: bool | None = None,
        media: bool | None = None,
    ) -> Contact:
        """Change our privacy settings for one conversation and tell the contact.

        ``media=False`` means text only: the contact's client stops offering media and ours
        drops any that arrives (``content_refused`` warning).
        """
        cid = self._resolve_contact(ref)
        async with self._lock:
            c = self._contacts[cid]
            for i, v in enumerate((receipts, typing, media)):
                if v is not None:
                    c.settings[i] = int(v)
            content = ConversationSettings(*c.settings).encode()
            session = Session.from_record(c.session, now=self._now())
            sealed = session.encrypt(content, rng=self._rng, now=self._now())
            c.session = session.to_record().to_bytes()
            self._put_contact(cid)
            self._queue(
                OutboxRecord(cid, self._rng(16), sealed.ct, sealed.fc, c.send, cap=c.sendcap)
            )
            await self._save()
        self._outbox_wake.set()
        return self._contact_view(cid, c)

    async def set_boundaries(self, boundaries: Boundaries) -> None:
        """Publish new boundaries on every contact address (and use them for new ones)."""
        self._boundaries = boundaries
        async with self._lock:
            self._ks_().put("meta", b"boundaries", boundaries.encode())
            await self._save()
        for aid, a in list(self._addresses.items()):
            await self._transport().set_boundaries(self._cred(a.rid, a.owner), boundaries)
            async with self._lock:
                a.bnd = _bnd_list(boundaries)
                self._put_address(aid)
                await self._save()

    def boundaries(self) -> Boundaries:
        """The boundaries this client publishes on its contact addresses."""
        return self._boundaries

    async def relay_holdings(self) -> list[tuple[str, MailboxInfo]]:
        """Ask the relay what it holds for each of our mailboxes (protocol.md §4.10).

        Returns:
            ``(label, info)`` pairs; ``label`` is ``address <n>`` or ``contact <id>``. A
            mailbox the relay no longer knows is left out (with a ``mailbox_lost`` warning).
        """
        out: list[tuple[str, MailboxInfo]] = []
        t = self._transport()
        mailboxes = [
            (f"address {n}", a.rid, a.owner) for n, a in enumerate(self._addresses.values(), 1)
        ]
        mailboxes += [(f"contact {cid.hex()}", c.rid, c.owner) for cid, c in self._contacts.items()]
        for label, rid, owner in mailboxes:
            try:
                out.append((label, await t.mailbox_info(self._cred(rid, owner))))
            except RelayRejected as exc:
                if exc.code != "AUTH":
                    raise
                # The relay holds nothing for it (expired or deleted): nothing to list.
                self._emit(ClientWarning("mailbox_lost", f"{label}: relay answered AUTH"))
        return out

    async def delete_account(self) -> None:
        """Delete every mailbox of ours at the relay (with its prekeys, capabilities and
        stored envelopes), then wipe the local keystore and history, and close.

        Deleted mailboxes answer like mailboxes that never existed. If the relay cannot be
        reached, nothing local is wiped (retry later): a wiped keystore could no longer prove
        ownership of what the relay still holds.

        Raises:
            TransportError: the relay could not be reached; local data is untouched.
        """
        t = self._transport()
        mailboxes = [(a.rid, a.owner) for a in self._addresses.values()]
        mailboxes += [(c.rid, c.owner) for c in self._contacts.values()]
        for rid, owner in mailboxes:
            try:
                await t.delete_mailbox(self._cred(rid, owner))
            except RelayRejected as exc:
                if exc.code != "AUTH":  # AUTH: already gone (expired or deleted before)
                    raise
        async with self._lock:
            self._history.wipe()
            self._ks_().wipe()
            self._ks = None
            self._addresses.clear()
            self._contacts.clear()
            self._requests.clear()
            self._by_rid.clear()
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
        import json

        from clientlib.crypto.fingerprint import identity_fingerprint

        contacts = []
        for c in self.contacts():
            contacts.append(
                {
                    "id": c.id,
                    "name": c.name,
                    "state": c.state,
                    "safety_number": c.safety_number,
                    "verified": c.verified,
                    "blocked": c.blocked,
                    "settings": {
                        "receipts": c.settings.receipts,
                        "typing": c.settings.typing,
                        "media": c.settings.media,
                    },
                    "messages": [
                        {
                            "id": m.id,
                            "direction": m.direction,
                            "text": m.text,
                            "sent_at": m.sent_at,
                            "received_at": m.received_at,
                            "state": m.state,
                        }
                        for m in self.messages(c)
                    ],
                }
            )
        doc = {
            "format": "blindrelay-export",
            "version": 1,
            "exported_at": self._now(),
            "relay": self._relay_url,
            "identity_fingerprint": identity_fingerprint(self.identity).hex(),
            "contacts": contacts,
            "requests": [
                {
                    "id": r.id,
                    "name": r.name,
                    "intro": r.intro,
                    "safety_number": r.safety_number,
                    "received_at": r.received_at,
                }
                for r in self.requests()
            ],
        }
        data = json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- public: abuse reports ---------------------------------------------------------------

    async def report(self, message: StoredMessage, reason: str, *, note: str | None = None) -> str:
        """Report a received message to the relay's moderators (protocol.md §4.11, §15.4).

        The report reveals this message (its text), both identity keys of the conversation
        and the franking data that let the relay verify, without trusting us, that the
        contact really sent exactly this; nothing about any other message. ``reason`` is one
        of ``harassment``, ``threats``, ``non_consensual_content``, ``minor_safety``,
        ``spam``, ``impersonation``, ``other``.

        Returns:
            The report id (hex); :class:`ReportResolved` arrives when a moderator acts.

        Raises:
            LocalProtocolError: not a received message of ours, or it carries no relay tag.
            RelayRejected: ``FRANKING``, ``EXPIRED`` (the report window closed), ``DUPLICATE``,
                ``QUOTA`` (too many reports today), ``MALFORMED`` (unknown reason).
        """
        if message.direction != "in" or message.evidence is None:
            raise LocalProtocolError("only received messages can be reported")
        cid = self._resolve_contact(message.contact_id)
        c = self._contacts[cid]
        try:
            ev = unpack_strict(message.evidence)
            _, msg, fk, fc, ft, fx, snd, rcp = ev
        except (WireError, ValueError, TypeError):
            raise LocalProtocolError("the message's report evidence is damaged") from None
        if ft is None or fx is None:
            raise LocalProtocolError("the relay gave this message no franking tag")
        report_id = await self._transport().report(
            self._cred(c.rid, c.owner),
            msg=msg,
            fk=fk,
            fc=fc,
            ft=ft,
            fx=fx,
            sender=snd,
            recipient=rcp,
            reason=reason,
            note=note,
        )
        async with self._lock:
            self._ks_().put(
                "reports",
                report_id,
                msgpack.packb([cid, message.id, "open", self._now()], use_bin_type=True),
            )
            await self._save()
        return report_id.hex()

    def reports(self) -> list[tuple[str, str, str]]:
        """Our reports: ``(report id, contact id, status)``, status ``open`` or ``resolved``."""
        out = []
        for rid, raw in self._ks_().items("reports"):
            cid, _mid, status, _ts = unpack_strict(raw)
            out.append((rid.hex(), cid.hex(), status))
        return out

    async def check_reports(self) -> None:
        """Ask the relay about every open report; emits :class:`ReportResolved` for each
        that a moderator resolved. Runs by itself on every connect."""
        for rid, raw in self._ks_().items("reports"):
            cid, mid, status, ts = unpack_strict(raw)
            c = self._contacts.get(cid)
            if status != "open" or c is None:
                continue
            st = await self._transport().report_status(self._cred(c.rid, c.owner), rid)
            if st.status == "resolved":
                async with self._lock:
                    self._ks_().put(
                        "reports",
                        rid,
                        msgpack.packb([cid, mid, "resolved", ts], use_bin_type=True),
                    )
                    await self._save()
                self._emit(ReportResolved(rid.hex(), st.action))

    # --- public: messages -----------------------------------------------------------------

    async def send(self, ref: ContactRef, text: str) -> StoredMessage:
        """Send a text message. Returns once it is sealed and durably queued; delivery to
        the relay follows (``DeliveryChanged`` events), in order, retried until it succeeds.

        Raises:
            LocalProtocolError: unknown contact, or the text is too long.
        """
        cid = self._resolve_contact(ref)
        data = text.encode("utf-8")
        if len(data) > MAX_TEXT_BYTES or "\x00" in text:
            raise LocalProtocolError(f"a message is at most {MAX_TEXT_BYTES} bytes of UTF-8")
        async with self._lock:
            c = self._contacts.get(cid)
            if c is None:
                raise LocalProtocolError("the contact was removed")
            if c.blocked:
                raise LocalProtocolError("the contact is blocked; unblock it first")
            now = self._now()
            mid = self._rng(MESSAGE_ID_SIZE)
            session = Session.from_record(c.session, now=self._now())
            content = TextMessage(id=mid, ts=now, text=text).encode()
            sealed = session.encrypt(content, rng=self._rng, now=now)
            c.session = session.to_record().to_bytes()
            self._put_contact(cid)
            msg = StoredMessage(cid.hex(), mid.hex(), "out", text, now, now, "queued")
            self._history.add([msg])
            self._queue(
                OutboxRecord(cid, self._rng(16), sealed.ct, sealed.fc, c.send, mid, c.sendcap)
            )
            await self._save()
        self._outbox_wake.set()
        return msg

    # --- internals: keystore --------------------------------------------------------------

    def _id(self) -> IdentityKeyPair:
        if self._identity is None:
            raise LocalProtocolError("the client is not started")
        return self._identity

    def _ks_(self) -> Keystore:
        if self._ks is None:
            raise LocalProtocolError("the client is not started")
        return self._ks

    def _now(self) -> int:
        return int(self._clock())

    async def _save(self) -> None:
        """Persist the keystore (call with ``_lock`` held)."""
        self._dirty = False
        await asyncio.to_thread(self._ks_().save)

    def _save_soon(self) -> None:
        """Persist changes whose loss is harmless within a moment (outbox removals: a
        re-deposit after a crash reuses the eid and the relay drops it), batching saves."""
        self._dirty = True
        if self._lazy_save is None or self._lazy_save.done():
            self._lazy_save = asyncio.get_running_loop().create_task(self._lazy())

    async def _lazy(self) -> None:
        await asyncio.sleep(0.2)
        async with self._lock:
            if self._dirty and not self._closed:
                await self._save()

    def _put_contact(self, cid: bytes) -> None:
        self._ks_().put("contacts", cid, self._contacts[cid].to_bytes())

    def _put_address(self, aid: bytes) -> None:
        self._ks_().put("addresses", aid, self._addresses[aid].to_bytes())

    def _queue(self, rec: OutboxRecord) -> None:
        self._outbox_seq += 1
        self._ks_().put("outbox", struct.pack(">Q", self._outbox_seq), rec.to_bytes())

    def _next_key_id(self) -> int:
        raw = self._ks_().get("meta", b"next-key-id") or struct.pack(">I", 1)
        (kid,) = struct.unpack(">I", raw)
        self._ks_().put("meta", b"next-key-id", struct.pack(">I", (kid + 1) % 2**32))
        return int(kid)

    def _new_prekey(self, kind: PreKeyKind) -> PreKeyPair:
        pk = PreKeyPair.generate(self._id(), kind, self._next_key_id(), self._rng)
        self._ks_().put(
            "prekeys", bytes((kind,)) + struct.pack(">I", pk.key_id), pk.private_bytes()
        )
        return pk

    def _load_prekey(self, kind: PreKeyKind, key_id: int) -> PreKeyPair | None:
        raw = self._ks_().get("prekeys", bytes((kind,)) + struct.pack(">I", key_id))
        return PreKeyPair.from_private_bytes(raw) if raw is not None else None

    def _delete_prekey(self, kind: PreKeyKind, key_id: int) -> None:
        self._ks_().delete("prekeys", bytes((kind,)) + struct.pack(">I", key_id))

    def _static_blob(self, a: AddressRecord) -> bytes:
        spk = self._load_prekey(PreKeyKind.X25519_SIGNED, a.spk)
        lr = self._load_prekey(PreKeyKind.MLKEM_LAST_RESORT, a.lr)
        if spk is None or lr is None:
            raise LocalProtocolError("the address's prekeys are missing from the keystore")
        return seal_static(
            a.key, a.sid, self.identity, spk.public_record, lr.public_record, self._rng
        )

    def _new_items(self, a: AddressRecord, count: int) -> list[bytes]:
        """Generate ``count`` one-time items (KEM + X25519, same key id) for an address."""
        out = []
        for _ in range(count):
            kem = self._new_prekey(PreKeyKind.MLKEM_ONE_TIME)
            opk = PreKeyPair.generate(self._id(), PreKeyKind.X25519_ONE_TIME, kem.key_id, self._rng)
            self._ks_().put(
                "prekeys",
                bytes((PreKeyKind.X25519_ONE_TIME,)) + struct.pack(">I", opk.key_id),
                opk.private_bytes(),
            )
            a.items.append(kem.key_id)
            out.append(seal_item(a.key, a.sid, kem.public_record, opk.public_record, self._rng))
        return out

    # --- internals: views and lookups -----------------------------------------------------

    def _safety_number(self, identity: bytes) -> str:
        # 5,200 iterated SHA-512 per side (protocol.md §16): ~10 ms, so computed once.
        sn = self._sn_cache.get(identity)
        if sn is None:
            sn = safety_number(self.identity, IdentityPublicKey.from_bytes(identity))
            self._sn_cache[identity] = sn
        return sn

    def _contact_view(self, cid: bytes, c: ContactRecord) -> Contact:
        sn = self._safety_number(c.identity)
        state: Literal["pending", "accepted"] = "accepted" if c.state == "accepted" else "pending"
        return Contact(
            cid.hex(),
            c.name,
            state,
            c.verified,
            sn,
            c.created,
            c.blocked,
            _settings(c.settings),
            _settings(c.peer) if c.peer is not None else None,
        )

    def _request_view(self, qid: bytes, r: RequestRecord) -> ContactRequest:
        sn = self._safety_number(r.identity)
        return ContactRequest(qid.hex(), r.name, r.intro, sn, r.received)

    def _resolve_contact(self, ref: ContactRef) -> bytes:
        key = ref.id if isinstance(ref, Contact) else ref
        return self._resolve(key, {k: v.name for k, v in self._contacts.items()}, "contact")

    def _resolve_request(self, ref: RequestRef) -> bytes:
        key = ref.id if isinstance(ref, ContactRequest) else ref
        return self._resolve(key, {k: v.name or "" for k, v in self._requests.items()}, "request")

    @staticmethod
    def _resolve(key: str, names: dict[bytes, str], what: str) -> bytes:
        k = key.strip().lower()
        exact = [i for i in names if i.hex() == k]
        if exact:
            return exact[0]
        by_name = [i for i, n in names.items() if n and n == key.strip()]
        if len(by_name) == 1:
            return by_name[0]
        prefix = [i for i in names if len(k) >= 4 and i.hex().startswith(k)]
        if len(prefix) == 1:
            return prefix[0]
        if len(by_name) > 1 or len(prefix) > 1:
            raise LocalProtocolError(f"ambiguous {what}: use more of its id")
        raise LocalProtocolError(f"no such {what}")

    # --- internals: relay -----------------------------------------------------------------

    def _cred(self, rid: bytes, owner: bytes) -> MailboxCredential:
        sk = ed25519_expand_seed(owner)
        return MailboxCredential(rid, lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd))

    def _owner_of(self, rid: bytes) -> bytes:
        kind, key = self._by_rid[rid]
        return self._addresses[key].owner if kind == "address" else self._contacts[key].owner

    def _transport(self) -> WebSocketTransport | HTTPTransport:
        """The transport for one-off requests (create, prekeys, bundles)."""
        if self._ws is not None:
            return self._ws
        if self._http is None:
            raise TransportError("the client is not connected")
        return self._http

    async def _create_mailbox(
        self, owner: bytes, *, kind: str, boundaries: Boundaries | None = None
    ) -> tuple[bytes, bytes]:
        public = ed25519_public_from_seed(owner)
        sk = ed25519_expand_seed(owner)
        return await self._transport().create_mailbox(
            public,
            lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd),
            kind=kind,
            boundaries=boundaries,
        )

    async def _create_pairwise(self, owner: bytes, cap: bytes) -> tuple[bytes, bytes]:
        """A pairwise mailbox that accepts deposits carrying ``cap`` only (protocol.md §4.8)."""
        rid, sid = await self._create_mailbox(owner, kind="pair")
        await self._transport().set_caps(self._cred(rid, owner), add=[capability_hash(sid, cap)])
        return rid, sid

    def _handle(self, address_sid: bytes) -> bytes:
        """Our handle towards one contact address: stable for that address, unlinkable across
        addresses (protocol.md §22.2)."""
        key = hkdf(
            self._id().private_bytes(), salt=bytes(32), info=b"blindrelay/v1/handle-key", length=32
        )
        return hmac_sha256(key, b"blindrelay/v1/handle\x00" + address_sid)[:16]

    async def _delete_mailbox(self, rid: bytes, owner: bytes) -> None:
        cred = self._cred(rid, owner)
        t = self._ws_by_rid.pop(rid, None)
        if t is not None:
            await t.delete_mailbox(cred)
            await t.close()
        else:
            await self._transport().delete_mailbox(cred)

    async def _subscribe(self, rid: bytes) -> None:
        if self._http_session is None:
            return  # offline: subscribed when connecting
        self._pending_caught_up.add(rid)
        self._caught_up.clear()
        cred = self._cred(rid, self._owner_of(rid))
        if self._mode == "http":
            return  # the poll loop picks it up
        if self._spread:
            session = aiohttp.ClientSession()
            try:
                ws = await self._open_ws(session)
            except BaseException:
                await session.close()
                raise
            self._ws_by_rid[rid] = ws
            await ws.subscribe(cred)
            return
        assert self._ws is not None
        await self._ws.subscribe(cred)

    async def _read_ws(self, ws: WebSocketTransport) -> None:
        source = _Source(ws, None)
        async for ev in ws.events():
            if isinstance(ev, Delivered):
                await self._inbox.put((source, ev.rid, ev.env))
            elif isinstance(ev, TCaughtUp):
                await self._inbox.put((source, ev.rid, None))
            elif isinstance(ev, Disconnected):
                if self._online:
                    self._online = False
                    self._emit(ConnectionChanged(online=False))
            elif isinstance(ev, Reconnected):
                if not self._online:
                    self._online = True
                    self._emit(ConnectionChanged(online=True))
                self._outbox_wake.set()
            elif isinstance(ev, SubscriptionLost):
                self._emit(ClientWarning("mailbox_lost", f"relay answered {ev.code}"))
                self._mark_caught_up(ev.rid)

    async def _poll_loop(self) -> None:
        """HTTP mode: fetch every mailbox, process, ack on the next fetch."""
        assert self._http is not None
        http = self._http
        source = _Source(None, http)
        backoff = self._poll_interval
        while True:
            try:
                for rid in list(self._by_rid):
                    if rid not in self._by_rid:
                        continue
                    more = True
                    while more:
                        cred = self._cred(rid, self._owner_of(rid))
                        envs, more = await http.fetch(cred, max=64)
                        for env in envs:
                            await self._inbox.put((source, rid, env))
                        if not envs:
                            break
                        await self._inbox.join()
                    await self._inbox.put((source, rid, None))
                    await self._inbox.join()
                if not self._online:
                    self._online = True
                    self._emit(ConnectionChanged(online=True))
                    self._outbox_wake.set()
                backoff = self._poll_interval
                await asyncio.sleep(self._poll_interval)
            except RelayRejected as exc:
                self._emit(ClientWarning("mailbox_lost", f"relay answered {exc.code}"))
                await asyncio.sleep(self._poll_interval)
            except TransportError:
                if self._online:
                    self._online = False
                    self._emit(ConnectionChanged(online=False))
                await asyncio.sleep(backoff * _jitter())
                backoff = min(backoff * 2, 30.0)

    def _emit(self, ev: ClientEvent) -> None:
        self._events.put_nowait(ev)

    def _mark_caught_up(self, rid: bytes) -> None:
        self._pending_caught_up.discard(rid)
        if not self._pending_caught_up and not self._caught_up.is_set():
            self._caught_up.set()
            self._emit(CaughtUp())

    # --- internals: receiving -------------------------------------------------------------

    async def _process_loop(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._inbox.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._process_batch(batch)
            except Exception as exc:
                # Fail-stop: memory may now be ahead of the keystore, so nothing more may be
                # acknowledged. Unacked envelopes wait at the relay for the next start.
                log.error("incoming processing stopped: %s", type(exc).__name__)
                self._emit(ClientWarning("storage_failed", type(exc).__name__))
                for _ in batch:
                    self._inbox.task_done()
                self._spawn(self.close())
                return
            for _ in batch:
                self._inbox.task_done()

    async def _process_batch(
        self, batch: list[tuple[_Source, bytes, StoredEnvelope | None]]
    ) -> None:
        events: list[ClientEvent] = []
        acks: dict[tuple[int, bytes], tuple[_Source, bytes, list[int]]] = {}
        markers: list[bytes] = []
        new_messages: list[tuple[Contact, StoredMessage]] = []
        async with self._lock:
            for source, rid, env in batch:
                if env is None:
                    markers.append(rid)
                    continue
                if env.seq:
                    acks.setdefault((id(source), rid), (source, rid, []))[2].append(env.seq)
                entry = self._by_rid.get(rid)
                if entry is None:
                    continue
                kind, key = entry
                if kind == "address":
                    self._on_request(key, env, events)
                else:
                    self._on_contact_envelope(key, env, events, new_messages)
            if new_messages:
                fresh = self._history.add([m for _, m in new_messages])
                events.extend(
                    MessageReceived(c, m)
                    for (c, m), ok in zip(new_messages, fresh, strict=True)
                    if ok
                )
            await self._save()
        for source, rid, seqs in acks.values():
            await self._ack(source, rid, seqs)
        for ev in events:
            self._emit(ev)
        for rid in markers:
            self._mark_caught_up(rid)
        if any(isinstance(e, ContactAdded) for e in events):
            self._outbox_wake.set()

    async def _ack(self, source: _Source, rid: bytes, seqs: list[int]) -> None:
        try:
            if source.ws is not None:
                await source.ws.ack(rid, seqs)
            elif source.http is not None:
                await source.http.fetch(self._cred(rid, self._owner_of(rid)), ack=seqs, max=0)
        except (TransportError, KeyError):
            pass  # redelivered later and dropped as a duplicate

    def _on_request(self, aid: bytes, env: StoredEnvelope, events: list[ClientEvent]) -> None:
        a = self._addresses[aid]
        if env.eid in a.eids:
            return
        remember(a.eids, env.eid)
        self._put_address(aid)
        identity = self._id()
        try:
            opened = open_envelope(identity, env.ct)
            header = opened.prekey_header
            if header is None:
                raise DecryptionError
            hs = _sha256(header.raw)
            if hs in a.seen:
                events.append(ClientWarning("duplicate_request"))
                return
            spk = self._load_prekey(PreKeyKind.X25519_SIGNED, header.signed_prekey_id)
            kem = self._load_prekey(header.kem_kind, header.kem_prekey_id)
            opk = (
                self._load_prekey(PreKeyKind.X25519_ONE_TIME, header.one_time_prekey_id)
                if header.one_time_prekey_id is not None
                else None
            )
            if (
                spk is None
                or kem is None
                or (header.one_time_prekey_id is not None and opk is None)
            ):
                raise DecryptionError
            accepted = accept(
                identity,
                opened,
                env.fc,
                signed_prekey=spk,
                kem_prekey=kem,
                one_time_prekey=opk,
                now=self._now(),
            )
        except (DecryptionError, LocalProtocolError, KeyValidationError, SessionError):
            events.append(ClientWarning("undecryptable", "a contact request did not decrypt"))
            return
        remember(a.seen, hs)
        for kind, kid in accepted.established.consumed_prekeys:
            self._delete_prekey(kind, kid)
            if kind is PreKeyKind.MLKEM_ONE_TIME and kid in a.items:
                a.items.remove(kid)
                a.left = max(0, a.left - 1)
        if accepted.established.used_last_resort:
            a.left = 0
            events.append(ClientWarning("prekeys_exhausted", "a request used the last-resort key"))
        self._put_address(aid)
        try:
            content = decode_content(accepted.message.plaintext)
        except WireError:
            content = None
        if not isinstance(content, ContactRequestContent):
            events.append(ClientWarning("malformed_content", "a contact request did not decode"))
            return
        qid = self._rng(16)
        self._requests[qid] = RequestRecord(
            address=aid,
            identity=bytes(opened.sender),
            session=accepted.session.to_record().to_bytes(),
            reply=content.reply,
            name=content.name,
            intro=content.intro,
            received=self._now(),
            cap=content.cap,
            hdl=env.hdl,
        )
        self._ks_().put("requests", qid, self._requests[qid].to_bytes())
        events.append(RequestReceived(self._request_view(qid, self._requests[qid])))
        if a.left < PREKEY_LOW_WATER:
            self._spawn(self._refill(aid))

    def _on_contact_envelope(
        self,
        cid: bytes,
        env: StoredEnvelope,
        events: list[ClientEvent],
        new_messages: list[tuple[Contact, StoredMessage]],
    ) -> None:
        c = self._contacts[cid]
        if env.eid in c.eids:
            return
        remember(c.eids, env.eid)
        try:
            session = Session.from_record(c.session, now=self._now())
            received = session.receive(
                env.ct, env.fc, identity=self._id(), now=self._now(), relay_tag=env.ft
            )
        except DecryptionError:
            self._put_contact(cid)
            events.append(ClientWarning("undecryptable", "", cid.hex()))
            return
        c.session = session.to_record().to_bytes()
        self._put_contact(cid)
        try:
            content = decode_content(received.plaintext)
        except WireError:
            events.append(ClientWarning("malformed_content", "", cid.hex()))
            return
        if isinstance(content, Accept):
            if c.state != "accepted":
                c.state = "accepted"
                c.send = content.reply
                c.sendcap = content.cap
                if content.name and not c.name:
                    c.name = content.name
                self._put_contact(cid)
                self._fix_outbox_destination(cid, content.reply, content.cap)
                events.append(ContactAdded(self._contact_view(cid, c)))
        elif isinstance(content, ConversationSettings):
            c.peer = [content.receipts, content.typing, content.media]
            self._put_contact(cid)
        elif isinstance(content, TextMessage):
            evidence = msgpack.packb(
                [
                    1,
                    received.plaintext,
                    received.franking_key,
                    received.franking_commitment,
                    env.ft,
                    env.fx,
                    c.identity,
                    bytes(self.identity),
                ],
                use_bin_type=True,
            )
            msg = StoredMessage(
                cid.hex(),
                content.id.hex(),
                "in",
                content.text,
                content.ts,
                self._now(),
                "received",
                evidence,
            )
            new_messages.append((self._contact_view(cid, c), msg))
        else:
            events.append(ClientWarning("malformed_content", "", cid.hex()))

    def _fix_outbox_destination(self, cid: bytes, sid: bytes, cap: bytes) -> None:
        ks = self._ks_()
        for key, raw in ks.items("outbox"):
            rec = OutboxRecord.from_bytes(raw)
            if rec.contact == cid and rec.sid is None:
                rec.sid = sid
                rec.cap = cap
                ks.put("outbox", key, rec.to_bytes())

    # --- internals: sending ---------------------------------------------------------------

    def _ready_outbox(self) -> list[tuple[bytes, OutboxRecord]]:
        if self._ks is None:
            return []
        ready = []
        for key, raw in self._ks.items("outbox"):
            rec = OutboxRecord.from_bytes(raw)
            if rec.sid is not None:
                ready.append((key, rec))
        return ready

    async def _outbox_loop(self) -> None:
        backoff = 0.25
        while True:
            await self._outbox_wake.wait()
            self._outbox_wake.clear()
            try:
                await self._flush_outbox()
                backoff = 0.25
            except TransportError:
                await asyncio.sleep(backoff * _jitter())
                backoff = min(backoff * 2, 15.0)
                self._outbox_wake.set()
            finally:
                if not self._outbox_wake.is_set():
                    self._idle_outbox.set()

    async def _flush_outbox(self) -> None:
        depositor: WebSocketTransport | HTTPTransport = (
            self._depositor if self._depositor is not None else self._transport()
        )
        while True:
            ready = self._ready_outbox()
            if not ready:
                return
            done: list[tuple[bytes, OutboxRecord, DeliveryState]] = []
            try:
                for key, rec in ready[:64]:
                    assert rec.sid is not None
                    try:
                        await self._deposit(depositor, rec)
                        done.append((key, rec, "sent"))
                    except RelayRejected as exc:
                        request = rec.hdl is not None
                        if exc.code == "POW" and rec.pw == 0:
                            # The address started asking for work after we queued: pay it.
                            rec.pw = -1
                            self._ks_().put("outbox", key, rec.to_bytes())
                            raise TransportError("proof of work now required") from exc
                        if exc.code in _TRANSIENT or (exc.code == "QUOTA" and not request):
                            raise TransportError(f"relay answered {exc.code}") from exc
                        done.append((key, rec, "failed"))
                        kind: WarningKind = "request_refused" if request else "mailbox_lost"
                        self._emit(ClientWarning(kind, exc.code, rec.contact.hex()))
            finally:
                if done:
                    await self._complete(done)

    async def _deposit(
        self, depositor: WebSocketTransport | HTTPTransport, rec: OutboxRecord
    ) -> None:
        assert rec.sid is not None
        pow_: tuple[bytes, int] | None = None
        if rec.hdl is not None and rec.pw != 0:  # a request: pay the address's proof of work
            chal = await self._transport().pow_challenge(rec.sid)
            if chal.bits > 0:
                counter = await asyncio.to_thread(
                    solve_pow, rec.sid, chal.nonce, rec.eid, chal.bits
                )
                pow_ = (chal.nonce, counter)
        await depositor.deposit(
            rec.sid, rec.ct, eid=rec.eid, fc=rec.fc, cap=rec.cap, hdl=rec.hdl, pow=pow_
        )

    async def _complete(self, done: Sequence[tuple[bytes, OutboxRecord, DeliveryState]]) -> None:
        async with self._lock:
            for key, _, _ in done:
                self._ks_().delete("outbox", key)
            self._save_soon()
        for _, rec, state in done:
            if rec.msg is not None:
                self._history.set_state(rec.contact.hex(), rec.msg.hex(), state)
                self._emit(DeliveryChanged(rec.contact.hex(), rec.msg.hex(), state))

    # --- internals: prekeys ---------------------------------------------------------------

    async def _prekey_maintenance(self) -> None:
        """On connect: ask the relay how many one-time items each address holds; refill;
        and learn the outcome of open abuse reports."""
        for aid in list(self._addresses):
            await self._refill(aid)
        try:
            await self.check_reports()
        except TransportError as exc:
            log.debug("report check postponed: %s", type(exc).__name__)

    async def _refill(self, aid: bytes) -> None:
        a = self._addresses.get(aid)
        if a is None:
            return
        try:
            cred = self._cred(a.rid, a.owner)
            left, has_static = await self._transport().put_prekeys(cred)
            if not has_static:  # the upload after creating the address never arrived
                left, _ = await self._transport().put_prekeys(
                    cred, static=self._static_blob(a), replace=True
                )
            if left >= PREKEY_LOW_WATER:
                if left != a.left:
                    async with self._lock:
                        a.left = left
                        self._put_address(aid)
                        await self._save()
                return
            if left == 0:
                self._emit(ClientWarning("prekeys_low", "refilling one-time prekeys"))
            async with self._lock:
                items = self._new_items(a, PREKEY_BATCH - left)
                self._put_address(aid)
                await self._save()
            left, _ = await self._transport().put_prekeys(cred, one_time=items)
            async with self._lock:
                a.left = left
                self._put_address(aid)
                await self._save()
        except TransportError as exc:
            log.debug("prekey refill postponed: %s", type(exc).__name__)

    def __repr__(self) -> str:
        return f"<Client relay={self._relay_url!r} contacts={len(self._contacts)}>"
