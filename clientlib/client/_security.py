"""Account security without accounts: passphrase changes and the duress passphrase
(protocol.md §23.4, §23.6), over the client's keystore.

The keystore does the cryptography (:mod:`clientlib.keystore.file`); this module builds the
decoy's client state (a fresh identity on the same relay, nothing else) and runs the slow
Argon2id work in a worker thread with the address book's lock held, so that no save races
a re-encryption.
"""

from __future__ import annotations

import asyncio
import struct

from clientlib.client._book import AddressBook
from clientlib.client.devicelist import first_device
from clientlib.client.state import STATE_VERSION
from clientlib.crypto.keys import RNG, IdentityKeyPair
from clientlib.errors import LocalProtocolError
from clientlib.keystore import FileKeystore

__all__ = ["change_passphrase", "clear_duress", "fresh_state", "set_duress"]


def fresh_state(rng: RNG, *, relay_url: str, name: str) -> dict[str, dict[bytes, bytes]]:
    """The keystore contents of a new client: a new identity and nothing else."""
    identity = IdentityKeyPair.generate(rng)
    did, dl = first_device(identity, rng)
    return {
        "meta": {
            b"device": did,
            b"devlist": dl,
            b"identity": identity.private_bytes(),
            b"relay": relay_url.encode(),
            b"history-key": rng(32),
            b"next-key-id": struct.pack(">I", 1),
            b"name": name.encode(),
            b"state-version": bytes((STATE_VERSION,)),
        }
    }


def _file(book: AddressBook) -> FileKeystore:
    ks = book.ks
    if not isinstance(ks, FileKeystore):
        raise LocalProtocolError("an in-memory client has no passphrase")
    return ks


async def change_passphrase(
    book: AddressBook,
    new: bytes,
    *,
    costs: tuple[int, int] | None,
    allow_weak: bool,
) -> None:
    ks = _file(book)
    ops, mem = costs if costs is not None else (None, None)
    async with book.lock:
        await asyncio.to_thread(
            ks.change_passphrase, new, opslimit=ops, memlimit=mem, allow_weak=allow_weak
        )


async def set_duress(
    book: AddressBook, passphrase: bytes, *, wipe: bool, name: str, allow_weak: bool
) -> None:
    ks = _file(book)
    decoy = fresh_state(book.rng, relay_url=book.relay_url, name=name)
    async with book.lock:
        await asyncio.to_thread(ks.set_duress, passphrase, decoy, wipe=wipe, allow_weak=allow_weak)


async def clear_duress(book: AddressBook) -> None:
    ks = _file(book)
    async with book.lock:
        await asyncio.to_thread(ks.clear_duress)
