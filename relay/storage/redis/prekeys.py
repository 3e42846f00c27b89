"""Redis: prekey hosting (the :class:`~relay.storage.base.PrekeyStore` concern)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
    mailbox_expired,
)
from relay.storage.errors import (
    MailboxNotFound,
    QuotaExceeded,
)
from relay.storage.redis.engine import (
    NOT_FOUND,
    QUOTA,
    RedisEngine,
    as_bytes,
)

__all__ = ["PrekeysMixin"]


class PrekeysMixin(RedisEngine):
    """Prekey hosting of :class:`RedisStore`."""

    async def put_prekeys(
        self,
        rid: bytes,
        static: bytes | None,
        items: Sequence[bytes],
        replace: bool,
        max_items: int,
        now: int,
    ) -> tuple[int, bool]:
        # A random token makes the script idempotent, so redis-py's retry after a lost reply
        # cannot append the items twice.
        args: list[Any] = [
            secrets.token_bytes(16),
            now,
            self._limits.mailbox_idle_ttl_s,
            1 if replace else 0,
            max_items,
            self._mailbox_ttl(now),
            0 if static is None else 1,
            b"" if static is None else static,
            *items,
        ]
        reply = await self._run("put_prekeys", self._keys.prekeys(rid), args)
        status = int(reply[0])
        if status == NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        return int(reply[1]), bool(int(reply[2]))

    async def prekey_count(self, rid: bytes, now: int) -> tuple[int, bool]:
        m, k, p = self._keys.prekeys(rid)
        with self._guard():
            async with self._client.pipeline(transaction=True) as pipe:
                _ = pipe.hget(m, "ad")
                _ = pipe.llen(p)
                _ = pipe.hexists(k, "s")
                ad, held, has_static = await pipe.execute()
        if ad is None or mailbox_expired(int(ad), now, self._limits):
            return 0, False
        return int(held), bool(has_static)

    async def take_prekeys(
        self, sid: bytes, now: int, per_hour: int
    ) -> tuple[bytes, bytes | None] | None:
        args = [sid, now, self._limits.mailbox_idle_ttl_s, per_hour]
        use_cache = True
        while True:
            rid = await self._rid_for_sid(sid, use_cache=use_cache)
            if rid is None:
                return None
            reply = await self._run("take_prekeys", self._keys.prekeys(rid), args)
            status = int(reply[0])
            if status == NOT_FOUND and use_cache:
                # The cached mapping may be stale: ask the index once more.
                self._sid_cache.pop(sid, None)
                use_cache = False
                continue
            break
        if status == NOT_FOUND:
            self._sid_cache.pop(sid, None)
            return None
        if status == 0:
            return None
        static = as_bytes(reply[1])
        assert static is not None
        return static, as_bytes(reply[2]) if len(reply) > 2 else None
