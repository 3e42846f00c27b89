"""The address book: our identity, contact addresses, contacts and pending requests as the
keystore holds them, the lookups over them, and when they are saved.

Every mutation runs with :attr:`AddressBook.lock` held and ends with :meth:`AddressBook.save`
(or :meth:`AddressBook.save_soon` for changes whose loss is harmless), so that memory is never
acted on (acked, deposited) ahead of the keystore. No I/O but the keystore's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path
from typing import Literal

from clientlib.client.devicelist import first_device
from clientlib.client.state import (
    STATE_VERSION,
    AddressRecord,
    ContactRecord,
    RequestRecord,
    decode_all,
)
from clientlib.client.types import Contact, ContactRequest, PrivacySettings
from clientlib.crypto.fingerprint import safety_number
from clientlib.crypto.keys import RNG, IdentityKeyPair, IdentityPublicKey
from clientlib.crypto.primitives import ed25519_expand_seed, ed25519_sign, hkdf, hmac_sha256
from clientlib.errors import LocalProtocolError, MessagingError
from clientlib.keystore import FileKeystore, InMemoryKeystore, Keystore
from clientlib.session import Session
from clientlib.transport import MailboxCredential
from clientlib.wire.codec import decode_map
from clientlib.wire.frames import Boundaries
from clientlib.wire.limits import OWNER_COMMAND_CONTEXT

__all__ = ["AddressBook", "ContactRef", "RequestRef", "bnd_list", "credential"]

ContactRef = Contact | str
RequestRef = ContactRequest | str


def credential(rid: bytes, owner: bytes) -> MailboxCredential:
    """The owner credential of one of our mailboxes (``owner``: its Ed25519 seed)."""
    sk = ed25519_expand_seed(owner)
    return MailboxCredential(rid, lambda cmd: ed25519_sign(sk, OWNER_COMMAND_CONTEXT + cmd))


def bnd_list(b: Boundaries) -> list[int]:
    return [b.size, b.att, b.day, b.pow]


def _settings(v: list[int]) -> PrivacySettings:
    delivery = bool(v[3]) if len(v) > 3 else True
    return PrivacySettings(
        receipts=bool(v[0]), typing=bool(v[1]), media=bool(v[2]), delivery_receipts=delivery
    )


class AddressBook:
    """Identity, addresses, contacts and requests, loaded from and saved to one keystore."""

    def __init__(self, *, rng: RNG, boundaries: Boundaries) -> None:
        self.rng = rng
        self.boundaries = boundaries
        self.relay_url = ""
        self.name = ""
        self.addresses: dict[bytes, AddressRecord] = {}
        self.contacts: dict[bytes, ContactRecord] = {}
        self.requests: dict[bytes, RequestRecord] = {}
        self.by_rid: dict[bytes, tuple[str, bytes]] = {}  # rid -> ("address"|"contact", key)
        self.group_owners: dict[bytes, bytes] = {}  # group mailbox rid -> owner seed (§26)
        self.lock = asyncio.Lock()
        self._ks: Keystore | None = None
        self._identity: IdentityKeyPair | None = None
        self._sn_cache: dict[bytes, str] = {}
        self._dirty = False
        self._lazy_save: asyncio.Task[None] | None = None
        self.closing = False  # set when the client starts closing: no more lazy saves
        self.expired_on_open = 0  # skipped keys the last load deleted (§12.3)

    # --- opening ---------------------------------------------------------------------------

    def create(
        self,
        path: Path | None,
        passphrase: bytes,
        *,
        relay_url: str,
        name: str,
        kdf: tuple[int, int],
        allow_weak: bool = False,
        seed: bytes | None = None,
    ) -> Keystore:
        """A new keystore (in memory when ``path`` is None) with a new identity (or the one
        of ``seed``, for a restore)."""
        ks: Keystore
        if path is None:
            ks = InMemoryKeystore()
        else:
            ops, mem = kdf
            ks = FileKeystore.create(
                path, passphrase, rng=self.rng, opslimit=ops, memlimit=mem, allow_weak=allow_weak
            )
        try:
            identity = (
                IdentityKeyPair(seed) if seed is not None else IdentityKeyPair.generate(self.rng)
            )
            ks.put("meta", b"identity", identity.private_bytes())
            ks.put("meta", b"relay", relay_url.encode())
            ks.put("meta", b"history-key", self.rng(32))
            ks.put("meta", b"next-key-id", struct.pack(">I", 1))
            ks.put("meta", b"name", name.encode())
            ks.put("meta", b"state-version", bytes((STATE_VERSION,)))
            did, dl = first_device(identity, self.rng)  # protocol.md §24.5
            ks.put("meta", b"device", did)
            ks.put("meta", b"devlist", dl)
            ks.save()
        except BaseException:
            if isinstance(ks, FileKeystore):
                ks.wipe()
            raise
        return ks

    def load(
        self,
        ks: Keystore,
        *,
        relay_override: str | None,
        update_relay: bool,
        now: int | None = None,
    ) -> None:
        """Read the client state from ``ks`` (which the book owns from now on).

        Raises:
            CorruptKeystore: the keystore holds no client state, or a record does not decode.
            UnsupportedKeystoreVersion: the state is newer than this code.
            LocalProtocolError: no relay URL stored and none given.
        """
        from clientlib.keystore.errors import CorruptKeystore, UnsupportedKeystoreVersion

        version = ks.get("meta", b"state-version")
        seed = ks.get("meta", b"identity")
        if version is None or seed is None:
            raise CorruptKeystore("the keystore holds no blindrelay client state")
        if version[0] > STATE_VERSION:
            raise UnsupportedKeystoreVersion(version[0], STATE_VERSION)
        self._identity = IdentityKeyPair(seed)
        relay = relay_override or (ks.get("meta", b"relay") or b"").decode()
        if not relay:
            raise LocalProtocolError("no relay URL stored; pass relay_url")
        if relay_override and update_relay:
            ks.put("meta", b"relay", relay.encode())
        self.relay_url = relay.rstrip("/")
        self.name = (ks.get("meta", b"name") or b"").decode()
        raw_bnd = ks.get("meta", b"boundaries")
        if raw_bnd is not None:
            self.boundaries = Boundaries.from_map(decode_map(raw_bnd, max_size=256)[1])
        self.addresses = decode_all(AddressRecord, ks.items("addresses"))
        self.contacts = decode_all(ContactRecord, ks.items("contacts"))
        self.requests = decode_all(RequestRecord, ks.items("requests"))
        #: Skipped keys deleted by this load (the caller saves the keystore if any).
        self.expired_on_open = 0
        if now is not None:  # drop over-age skipped keys on open (§12.3)
            self.expired_on_open = self._expire_skipped(ks, now)
        for aid, a in self.addresses.items():
            self.by_rid[a.rid] = ("address", aid)
        for cid, c in self.contacts.items():
            self.by_rid[c.rid] = ("contact", cid)

    def expire_skipped(self, now: int) -> int:
        """Delete the skipped message keys older than ``MAX_SKIPPED_KEY_AGE`` from every
        contact's session (protocol.md §12.3; call with the lock held, then save if any went).
        Returns how many keys were deleted."""
        return self._expire_skipped(self.ks, now)

    def _expire_skipped(self, ks: Keystore, now: int) -> int:
        gone = 0
        for cid, c in self.contacts.items():
            if not c.session:  # restored, waiting for the answer to our offer (§24.4)
                continue
            session = Session.from_record(c.session)
            n = session.expire_skipped(now)
            if n:
                c.session = session.to_record().to_bytes()
                ks.put("contacts", cid, c.to_bytes())
                gone += n
        return gone

    def attach(self, ks: Keystore | None) -> None:
        """Own ``ks`` from now on (``None``: let go of it, for a failed open)."""
        self._ks = ks

    @property
    def ks(self) -> Keystore:
        if self._ks is None:
            raise LocalProtocolError("the client is not started")
        return self._ks

    @property
    def started(self) -> bool:
        return self._ks is not None

    @property
    def identity(self) -> IdentityKeyPair:
        if self._identity is None:
            raise LocalProtocolError("the client is not started")
        return self._identity

    # --- saving ----------------------------------------------------------------------------

    async def save(self) -> None:
        """Persist the keystore (call with :attr:`lock` held)."""
        self._dirty = False
        await asyncio.to_thread(self.ks.save)

    def save_soon(self) -> None:
        """Persist changes whose loss is harmless within a moment (outbox removals: a
        re-deposit after a crash reuses the eid and the relay drops it), batching saves."""
        self._dirty = True
        if self._lazy_save is None or self._lazy_save.done():
            self._lazy_save = asyncio.get_running_loop().create_task(self._lazy())

    async def _lazy(self) -> None:
        await asyncio.sleep(0.2)
        async with self.lock:
            if self._dirty and not self.closing:
                await self.save()

    async def close(self) -> None:
        """Save what :meth:`save_soon` left pending, then close the keystore."""
        self.closing = True
        if self._lazy_save is not None:
            self._lazy_save.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lazy_save
        if self._ks is not None:
            if self._dirty:
                with contextlib.suppress(MessagingError, OSError):
                    await asyncio.to_thread(self._ks.save)
            self._ks.close()

    def wipe(self) -> None:
        """Delete the keystore and forget everything (call with :attr:`lock` held)."""
        self.ks.wipe()
        self._ks = None
        self.addresses.clear()
        self.contacts.clear()
        self.requests.clear()
        self.by_rid.clear()

    def put_contact(self, cid: bytes) -> None:
        self.ks.put("contacts", cid, self.contacts[cid].to_bytes())

    def put_address(self, aid: bytes) -> None:
        self.ks.put("addresses", aid, self.addresses[aid].to_bytes())

    def put_request(self, qid: bytes) -> None:
        self.ks.put("requests", qid, self.requests[qid].to_bytes())

    def add_address(self, aid: bytes, a: AddressRecord) -> None:
        self.addresses[aid] = a
        self.by_rid[a.rid] = ("address", aid)
        self.put_address(aid)

    def add_group_mailbox(self, rid: bytes, gid: bytes, owner: bytes) -> None:
        """A group mailbox of ours (its record is kept by :mod:`clientlib.client._groups`)."""
        self.by_rid[rid] = ("group", gid)
        self.group_owners[rid] = owner

    def drop_group_mailbox(self, rid: bytes) -> None:
        self.by_rid.pop(rid, None)
        self.group_owners.pop(rid, None)

    def add_contact(self, cid: bytes, c: ContactRecord) -> None:
        self.contacts[cid] = c
        self.by_rid[c.rid] = ("contact", cid)
        self.put_contact(cid)

    def drop_contact(self, cid: bytes) -> None:
        c = self.contacts.pop(cid, None)
        if c is not None:
            self.by_rid.pop(c.rid, None)
        self.ks.delete("contacts", cid)

    def drop_request(self, qid: bytes) -> None:
        self.requests.pop(qid, None)
        self.ks.delete("requests", qid)

    def set_boundaries(self, boundaries: Boundaries) -> None:
        self.boundaries = boundaries
        self.ks.put("meta", b"boundaries", boundaries.encode())

    # --- lookups ---------------------------------------------------------------------------

    def owner_of(self, rid: bytes) -> bytes:
        """The owner seed of one of our mailboxes.

        Raises:
            KeyError: not (or no longer) one of ours.
        """
        kind, key = self.by_rid[rid]
        if kind == "group":
            return self.group_owners[rid]
        return self.addresses[key].owner if kind == "address" else self.contacts[key].owner

    def recv_relay(self, rid: bytes) -> str | None:
        """The relay one of our mailboxes is on (normal form; None: the home relay, also for
        mailboxes that are not, or no longer, ours)."""
        kind, key = self.by_rid.get(rid, ("", b""))
        if kind == "address":
            return self.addresses[key].relay
        if kind == "contact":
            return self.contacts[key].rr
        return None

    def receive_relays(self) -> set[str]:
        """The relays other than home that hold mailboxes of ours (protocol.md §27.1)."""
        out = {a.relay for a in self.addresses.values()}
        out |= {c.rr for c in self.contacts.values()}
        return {r for r in out if r is not None}

    def cred(self, rid: bytes) -> MailboxCredential:
        """The owner credential of one of our mailboxes (``KeyError``: not ours)."""
        return credential(rid, self.owner_of(rid))

    def mailboxes(self) -> list[tuple[str, bytes, bytes]]:
        """``(label, rid, owner)`` of every mailbox: ``address <n>`` then ``contact <id>``."""
        out = [(f"address {n}", a.rid, a.owner) for n, a in enumerate(self.addresses.values(), 1)]
        out += [
            ("own devices" if c.me else f"contact {cid.hex()}", c.rid, c.owner)
            for cid, c in self.contacts.items()
        ]
        return out

    def handle(self, address_sid: bytes) -> bytes:
        """Our handle towards one contact address: stable for that address, unlinkable across
        addresses (protocol.md §22.2)."""
        key = hkdf(
            self.identity.private_bytes(),
            salt=bytes(32),
            info=b"blindrelay/v1/handle-key",
            length=32,
        )
        return hmac_sha256(key, b"blindrelay/v1/handle\x00" + address_sid)[:16]

    def safety_number(self, identity: bytes) -> str:
        # 5,200 iterated SHA-512 per side (protocol.md §16): ~10 ms, so computed once.
        sn = self._sn_cache.get(identity)
        if sn is None:
            sn = safety_number(self.identity.public, IdentityPublicKey.from_bytes(identity))
            self._sn_cache[identity] = sn
        return sn

    def contact_view(self, cid: bytes) -> Contact:
        c = self.contacts[cid]
        state: Literal["pending", "accepted"] = "accepted" if c.state == "accepted" else "pending"
        return Contact(
            cid.hex(),
            c.name,
            state,
            c.verified,
            self.safety_number(c.identity),
            c.created,
            c.blocked,
            _settings(c.settings),
            _settings(c.peer) if c.peer is not None else None,
            c.dis,
        )

    def request_view(self, qid: bytes) -> ContactRequest:
        r = self.requests[qid]
        sn = self.safety_number(r.identity)
        return ContactRequest(qid.hex(), r.name, r.intro, sn, r.received)

    def contact_views(self) -> list[Contact]:
        """Every contact, oldest first."""
        recs = sorted(self.contacts.items(), key=lambda kv: (kv[1].created, kv[0]))
        return [self.contact_view(cid) for cid, c in recs if not c.me]

    def request_views(self) -> list[ContactRequest]:
        """Incoming requests waiting for a decision, oldest first."""
        recs = sorted(self.requests.items(), key=lambda kv: (kv[1].received, kv[0]))
        return [self.request_view(qid) for qid, _ in recs]

    def resolve_contact(self, ref: ContactRef) -> bytes:
        """Raises: LocalProtocolError: no such contact, or the reference is ambiguous."""
        key = ref.id if isinstance(ref, Contact) else ref
        names = {k: v.name for k, v in self.contacts.items() if not v.me}
        return _resolve(key, names, "contact")

    def resolve_request(self, ref: RequestRef) -> bytes:
        """Raises: LocalProtocolError: no such request, or the reference is ambiguous."""
        key = ref.id if isinstance(ref, ContactRequest) else ref
        return _resolve(key, {k: v.name or "" for k, v in self.requests.items()}, "request")

    def __repr__(self) -> str:
        return f"<AddressBook contacts={len(self.contacts)}>"


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
