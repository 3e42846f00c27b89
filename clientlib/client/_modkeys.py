"""The relay's moderator keys as a client caches them (protocol.md §15.5.3, §15.5.7).

A sender franks under the current key of the recipient's relay (the relay the contact
receives on, §27.1: one cache per relay, see ``_relays``); a recipient accepts a message
franked under its relay's current key or the key immediately before it. The list is fetched
without authentication (``mkeys?``), kept at most ``REFRESH_S`` and re-fetched early when a
message names a kid the cache does not hold.
"""

from __future__ import annotations

from typing import Final

from clientlib.errors import TransportError
from clientlib.session import ModeratorKey
from clientlib.transport.api import RelayAPI

__all__ = ["REFRESH_S", "ModeratorKeyCache"]

#: Re-fetch after this many seconds (below the shortest allowed ``franking_rotation_s``).
REFRESH_S: Final = 600


class ModeratorKeyCache:
    """``(kid, M_kid)`` of our relay, current first; see the module docstring."""

    __slots__ = ("_fetched_at", "_keys", "_missed", "misses")

    def __init__(self) -> None:
        self._keys: tuple[tuple[int, bytes], ...] = ()
        self._fetched_at: int | None = None
        self._missed = False
        #: Lookups of a kid the list does not hold, ever (the inbox compares it around one
        #: envelope to tell "unknown key id, fetch and retry" from any other failure).
        self.misses = 0

    def stale(self, now: int) -> bool:
        return (
            self._missed or self._fetched_at is None or not 0 <= now - self._fetched_at < REFRESH_S
        )

    async def ensure(self, relay: RelayAPI, now: int) -> None:
        """Re-fetch the list if it is stale; a failed fetch keeps the old list.

        Raises:
            nothing: transport errors and refusals leave the cache as it was.
        """
        if not self.stale(now):
            return
        try:
            keys = await relay.moderation_keys()
        except TransportError:  # RelayRejected included
            return
        if keys:
            self.set(keys, now)

    def set(self, keys: tuple[tuple[int, bytes], ...], now: int) -> None:
        """Install a fetched list (what :meth:`ensure` does after a fetch)."""
        self._keys, self._fetched_at, self._missed = tuple(keys), now, False

    def encode(self) -> bytes:
        """The list as the keystore keeps it (namespace ``modkeys``), for offline sending."""
        return b"".join(kid.to_bytes(4, "big") + key for kid, key in self._keys)

    def restore(self, raw: bytes | None) -> None:
        """Load a stored list when nothing was fetched yet (it is marked stale)."""
        if self._keys or not raw or len(raw) % 36:
            return
        self._keys = tuple(
            (int.from_bytes(raw[i : i + 4], "big"), raw[i + 4 : i + 36])
            for i in range(0, len(raw), 36)
        )

    def current(self) -> ModeratorKey:
        """The key to frank under.

        Raises:
            TransportError: the relay's keys were never fetched (not connected yet).
        """
        if not self._keys:
            raise TransportError("the relay's moderator keys are not known yet")
        kid, key = self._keys[0]
        return ModeratorKey(kid, key)

    def lookup(self, kid: int) -> bytes | None:
        """``M_kid`` if ``kid`` is our relay's current key or the one before, else None
        (and the next :meth:`ensure` re-fetches)."""
        for k, key in self._keys[:2]:
            if k == kid:
                return key
        self._missed = True
        self.misses += 1
        return None
