"""Prekey upkeep: the private prekeys in the keystore, the sealed blobs a contact address hosts
at the relay (protocol.md §21.3), and refilling one-time items as requests consume them.

Keystore namespace ``prekeys``: ``kind(1) || key_id(4, BE) -> PreKeyPair.private_bytes()``;
``meta/next-key-id`` is the next key id (u32, BE).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from clientlib.client._book import AddressBook, bnd_list, credential
from clientlib.client._link import Relay
from clientlib.client.invite import ADDRESS_KEY_SIZE, seal_item, seal_static
from clientlib.client.state import AddressRecord
from clientlib.client.types import ClientEvent, ClientWarning
from clientlib.crypto.prekeys import PreKeyKind, PreKeyPair
from clientlib.errors import LocalProtocolError, TransportError
from clientlib.wire.frames import Boundaries

__all__ = ["PREKEY_BATCH", "PREKEY_LOW_WATER", "Prekeys"]

log = logging.getLogger("clientlib.client")

#: One-time prekey items uploaded per address, and the level that triggers a refill.
PREKEY_BATCH = 24
PREKEY_LOW_WATER = 8


def _key(kind: PreKeyKind, key_id: int) -> bytes:
    return bytes((kind,)) + struct.pack(">I", key_id)


class Prekeys:
    """Our prekeys: generated, stored, looked up, consumed, and topped up at the relay."""

    def __init__(self, book: AddressBook) -> None:
        self._book = book

    # --- the keystore side (call with the book's lock held) --------------------------------

    def _next_key_id(self) -> int:
        ks = self._book.ks
        raw = ks.get("meta", b"next-key-id") or struct.pack(">I", 1)
        (kid,) = struct.unpack(">I", raw)
        ks.put("meta", b"next-key-id", struct.pack(">I", (kid + 1) % 2**32))
        return int(kid)

    def new(self, kind: PreKeyKind) -> PreKeyPair:
        b = self._book
        pk = PreKeyPair.generate(b.identity, kind, self._next_key_id(), b.rng)
        b.ks.put("prekeys", _key(kind, pk.key_id), pk.private_bytes())
        return pk

    def load(self, kind: PreKeyKind, key_id: int) -> PreKeyPair | None:
        raw = self._book.ks.get("prekeys", _key(kind, key_id))
        return PreKeyPair.from_private_bytes(raw) if raw is not None else None

    def delete(self, kind: PreKeyKind, key_id: int) -> None:
        self._book.ks.delete("prekeys", _key(kind, key_id))

    def static_blob(self, a: AddressRecord) -> bytes:
        """The address's sealed static part (identity, signed and last-resort prekeys).

        Raises:
            LocalProtocolError: the address's prekeys are missing from the keystore.
        """
        spk = self.load(PreKeyKind.X25519_SIGNED, a.spk)
        lr = self.load(PreKeyKind.MLKEM_LAST_RESORT, a.lr)
        if spk is None or lr is None:
            raise LocalProtocolError("the address's prekeys are missing from the keystore")
        b = self._book
        return seal_static(
            a.key, a.sid, b.identity.public, spk.public_record, lr.public_record, b.rng
        )

    def new_items(self, a: AddressRecord, count: int) -> list[bytes]:
        """Generate ``count`` one-time items (KEM + X25519, same key id) for an address."""
        b = self._book
        out = []
        for _ in range(count):
            kem = self.new(PreKeyKind.MLKEM_ONE_TIME)
            opk = PreKeyPair.generate(b.identity, PreKeyKind.X25519_ONE_TIME, kem.key_id, b.rng)
            b.ks.put("prekeys", _key(PreKeyKind.X25519_ONE_TIME, opk.key_id), opk.private_bytes())
            a.items.append(kem.key_id)
            out.append(seal_item(a.key, a.sid, kem.public_record, opk.public_record, b.rng))
        return out

    def new_address(
        self, rid: bytes, sid: bytes, owner: bytes, *, now: int, boundaries: Boundaries
    ) -> tuple[bytes, AddressRecord, bytes, list[bytes]]:
        """A contact address for the mailbox ``rid``/``sid``, with its prekeys, added to the
        book. Returns ``(address id, record, static blob, one-time items)`` to upload."""
        b = self._book
        spk = self.new(PreKeyKind.X25519_SIGNED)
        lr = self.new(PreKeyKind.MLKEM_LAST_RESORT)
        aid = b.rng(16)
        a = AddressRecord(
            rid=rid,
            sid=sid,
            owner=owner,
            key=b.rng(ADDRESS_KEY_SIZE),
            spk=spk.key_id,
            lr=lr.key_id,
            created=now,
            bnd=bnd_list(boundaries),
        )
        static = self.static_blob(a)
        items = self.new_items(a, PREKEY_BATCH)
        b.add_address(aid, a)
        return aid, a, static, items

    # --- the relay side --------------------------------------------------------------------

    async def refill(
        self, aid: bytes, relay: Callable[[], Relay], emit: Callable[[ClientEvent], None]
    ) -> None:
        """Ask the relay how many one-time items the address holds and top them up to
        :data:`PREKEY_BATCH` when fewer than :data:`PREKEY_LOW_WATER` are left (re-uploading
        the static part if the relay lacks it). Transport errors postpone it silently."""
        b = self._book
        a = b.addresses.get(aid)
        if a is None:
            return
        try:
            cred = credential(a.rid, a.owner)
            left, has_static = await relay().put_prekeys(cred)
            if not has_static:  # the upload after creating the address never arrived
                left, _ = await relay().put_prekeys(cred, static=self.static_blob(a), replace=True)
            if left >= PREKEY_LOW_WATER:
                if left != a.left:
                    await self.set_left(aid, left)
                return
            if left == 0:
                emit(ClientWarning("prekeys_low", "refilling one-time prekeys"))
            async with b.lock:
                items = self.new_items(a, PREKEY_BATCH - left)
                b.put_address(aid)
                await b.save()
            left, _ = await relay().put_prekeys(cred, one_time=items)
            await self.set_left(aid, left)
        except TransportError as exc:
            log.debug("prekey refill postponed: %s", type(exc).__name__)

    async def set_left(self, aid: bytes, left: int) -> None:
        """Record how many one-time items the relay holds for an address."""
        b = self._book
        async with b.lock:
            b.addresses[aid].left = left
            b.put_address(aid)
            await b.save()
