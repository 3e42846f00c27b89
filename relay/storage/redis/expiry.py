"""Redis: expiry of every record (``purge_expired``)."""

from __future__ import annotations

from typing import Final

from relay.storage.redis.engine import (
    SCAN_COUNT,
    RedisEngine,
)

__all__ = ["MOD_PURGE_CHUNK", "ExpiryMixin"]

#: Reports and audit entries one purge script removes at most (the purge repeats it).
MOD_PURGE_CHUNK: Final = 500


class ExpiryMixin(RedisEngine):
    """Expiry of every record of :class:`RedisStore`."""

    async def purge_expired(self, now: int) -> int:
        # Challenges are left to their key TTL (at most ``TTL_SLACK_S`` after expiry), and
        # ``take_challenge`` never returns an expired one.
        total = 0
        pattern = f"{self._keys.prefix}m:*"
        start = len(self._keys.prefix) + 3  # "m:{"
        with self._guard():
            async for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                try:
                    rid = bytes.fromhex(key[start:-1].decode("ascii"))
                except ValueError:
                    continue
                gone, n_env, n_dedupe, sid = await self._run(
                    "purge", self._keys.every(rid), [now, self._limits.mailbox_idle_ttl_s]
                )
                total += int(gone) + int(n_env) + int(n_dedupe)
                if gone:
                    self._sid_cache.pop(sid, None)
                    await self._run("unlink_if", [self._keys.sid(sid)], [rid])
        limits = self._limits
        keys = [self._keys.mod(n) for n in ("f", "fc", "r", "rr", "ri", "ro", "au")]
        args = [
            now,
            limits.report_window_s,
            limits.report_retention_s,
            limits.audit_retention_s,
            MOD_PURGE_CHUNK,
        ]
        for _ in range(1000):  # bounded: at most 1000 chunks per purge run
            removed = int(await self._run("purge_mod", keys, args))
            total += removed
            if removed < MOD_PURGE_CHUNK:
                break
        return total
