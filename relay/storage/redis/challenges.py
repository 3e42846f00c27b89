"""Redis: single-use challenges (the :class:`~relay.storage.base.ChallengeStore` concern)."""

from __future__ import annotations

from relay.storage.redis.engine import (
    TTL_SLACK_S,
    RedisEngine,
    as_bytes,
)

__all__ = ["ChallengesMixin"]


class ChallengesMixin(RedisEngine):
    """Single-use challenges of :class:`RedisStore`."""

    async def put_challenge(self, nonce: bytes, binding: bytes, expires_at: int) -> None:
        value = expires_at.to_bytes(8, "big", signed=True) + binding
        await self._run(
            "put_challenge", [self._keys.challenge(nonce)], [value, expires_at, TTL_SLACK_S]
        )

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        with self._guard():
            value = as_bytes(await self._client.getdel(self._keys.challenge(nonce)))
        if value is None or now >= int.from_bytes(value[:8], "big", signed=True):
            return None
        binding: bytes = value[8:]
        return binding
