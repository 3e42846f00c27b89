"""Push wake-ups (protocol.md §28): register one endpoint on every mailbox of ours.

The endpoint (a UnifiedPush URL from the distributor on this device) and a 32-byte token we
choose are registered on each of our mailboxes at the home relay; when an envelope is stored
for one of them while we are not connected, the relay POSTs the token there, and the app
wakes and syncs. The token says nothing to anyone but us (a fresh random value unless the
caller gives one); the relay learns the endpoint URL, which links the mailboxes registered
with it (protocol.md §28.3).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from clientlib.client._book import AddressBook, credential
from clientlib.errors import LocalProtocolError, RelayRejected
from clientlib.transport.api import RelayAPI
from clientlib.wire.limits import PUSH_TOKEN_SIZE

__all__ = ["register_push", "unregister_push"]


async def register_push(
    transport: Callable[[bytes], RelayAPI], book: AddressBook, url: str, token: bytes | None
) -> tuple[bytes, int]:
    """Register ``url`` and ``token`` (random if None) on every mailbox of ``book``, each at
    the relay ``transport(rid)`` it is on.

    Returns:
        The token and how many mailboxes now have the endpoint (a mailbox the relay no
        longer knows, ``AUTH``, is skipped).

    Raises:
        LocalProtocolError: ``token`` is not 32 bytes, or ``url`` is not an http(s) URL of
            at most 512 bytes.
        RelayRejected: ``MALFORMED`` (the relay will not POST to ``url``: the first
            mailbox refuses it, so nothing changed).
        TransportError: the relay could not be reached.
    """
    tok = os.urandom(PUSH_TOKEN_SIZE) if token is None else token
    if len(tok) != PUSH_TOKEN_SIZE:
        raise LocalProtocolError("a push token is 32 bytes")
    done = 0
    for _, rid, owner in book.mailboxes():
        try:
            await transport(rid).set_push(credential(rid, owner), url, tok)
        except RelayRejected as exc:
            if exc.code != "AUTH":
                raise
            continue
        done += 1
    return tok, done


async def unregister_push(transport: Callable[[bytes], RelayAPI], book: AddressBook) -> int:
    """Forget the push endpoint of every mailbox of ``book``; returns how many answered.

    Raises:
        TransportError: the relay could not be reached.
    """
    done = 0
    for _, rid, owner in book.mailboxes():
        try:
            await transport(rid).clear_push(credential(rid, owner))
        except RelayRejected as exc:
            if exc.code != "AUTH":
                raise
            continue
        done += 1
    return done
