"""Redis: capabilities, boundaries and bans (the ConsentStore concern)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clientlib.wire.frames import Boundaries
from clientlib.wire.limits import KIND_ADDRESS, KIND_PAIRWISE
from relay.storage._common import (
    MSG_NOT_FOUND,
    MSG_QUOTA,
)
from relay.storage.errors import (
    MailboxNotFound,
    QuotaExceeded,
    WrongKind,
)
from relay.storage.redis.engine import (
    NOT_FOUND,
    QUOTA,
    WRONG_KIND,
    RedisEngine,
)

__all__ = ["ConsentMixin"]


class ConsentMixin(RedisEngine):
    """Capabilities, boundaries and bans of :class:`RedisStore`."""

    async def _set_members(
        self,
        key: str,
        kind: str,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        limit: int,
        now: int,
    ) -> int:
        removed = list(remove)
        args: list[Any] = [
            now,
            self._limits.mailbox_idle_ttl_s,
            kind,
            limit,
            self._mailbox_ttl(now),
            len(removed),
            *removed,
            *add,
        ]
        reply = await self._run("set_members", [self._keys.mailbox(rid)[0], key], args)
        status = int(reply[0])
        if status == NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == QUOTA:
            raise QuotaExceeded(MSG_QUOTA)
        if status == WRONG_KIND:
            raise WrongKind("the operation does not apply to this mailbox's kind")
        return int(reply[1])

    async def set_caps(
        self,
        rid: bytes,
        add: Sequence[bytes],
        remove: Sequence[bytes],
        max_caps: int,
        now: int,
    ) -> int:
        key = self._keys.consent(rid)[0]
        return await self._set_members(key, KIND_PAIRWISE, rid, add, remove, max_caps, now)

    async def set_bans(
        self,
        rid: bytes,
        ban: Sequence[bytes],
        unban: Sequence[bytes],
        max_bans: int,
        now: int,
    ) -> int:
        key = self._keys.consent(rid)[1]
        return await self._set_members(key, KIND_ADDRESS, rid, ban, unban, max_bans, now)

    async def set_boundaries(self, rid: bytes, boundaries: Boundaries, now: int) -> None:
        b = boundaries
        status = int(
            await self._run(
                "set_boundaries",
                [self._keys.mailbox(rid)[0]],
                [now, self._limits.mailbox_idle_ttl_s, b.size, b.att, b.day, b.pow],
            )
        )
        if status == NOT_FOUND:
            raise MailboxNotFound(MSG_NOT_FOUND)
        if status == WRONG_KIND:
            raise WrongKind("the operation does not apply to this mailbox's kind")
