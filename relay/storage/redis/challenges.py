"""Redis: single-use challenges (the :class:`~relay.storage.base.ChallengeStore` concern).

At ``maxmemory`` (``noeviction``) Redis refuses the challenge write, and an HTTP owner could
then not fetch, ack or delete: the operations that free memory. A challenge for one of them
(``frees``) is then written by ``put_challenge_oom``, the same script flagged ``allow-oom``,
within an allowance per relay process: at most :data:`OOM_CHALLENGES` such challenges whose
keys may still exist (a key lives until taken or its TTL), so that unauthenticated challenge
requests cannot grow Redis past its limit by more than about ``OOM_CHALLENGES`` times 200 bytes
per process. Beyond it the answer is ``STORAGE_FULL`` as before.
"""

from __future__ import annotations

import time
from typing import Final

from relay.storage.errors import StorageFull
from relay.storage.redis.engine import (
    TTL_SLACK_S,
    RedisEngine,
    as_bytes,
)

__all__ = ["OOM_CHALLENGES", "ChallengesMixin"]

#: Challenges one process may write past ``maxmemory`` whose keys may still exist.
OOM_CHALLENGES: Final = 1024


class ChallengesMixin(RedisEngine):
    """Single-use challenges of :class:`RedisStore`."""

    async def put_challenge(
        self, nonce: bytes, binding: bytes, expires_at: int, *, frees: bool = False
    ) -> None:
        value = expires_at.to_bytes(8, "big", signed=True) + binding
        keys, args = [self._keys.challenge(nonce)], [value, expires_at, TTL_SLACK_S]
        try:
            await self._run("put_challenge", keys, args)
        except StorageFull:
            if not frees or not self._oom_allowance(expires_at):
                raise
            await self._run("put_challenge_oom", keys, args)

    def _oom_allowance(self, expires_at: int) -> bool:
        """Count one challenge written past ``maxmemory``; False when the allowance is used."""
        issued = self._oom_issued
        now = time.time()
        while issued and issued[0] <= now:
            issued.popleft()
        if len(issued) >= OOM_CHALLENGES:
            return False
        issued.append(max(now, float(expires_at)) + TTL_SLACK_S)  # the key's TTL at most
        return True

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        with self._guard():
            value = as_bytes(await self._client.getdel(self._keys.challenge(nonce)))
        if value is None or now >= int.from_bytes(value[:8], "big", signed=True):
            return None
        binding: bytes = value[8:]
        return binding
