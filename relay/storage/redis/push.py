"""Redis: push endpoints of mailboxes (protocol.md §28; the PushStore concern).

The endpoint is two fields of the mailbox's record hash ``m:{<rid hex>}`` (``pu`` the URL as
registered, ``pt`` the token): in the mailbox's hash tag, and deleted or expired with the
record by the scripts that already delete it.
"""

from __future__ import annotations

from relay.storage._common import MSG_NOT_FOUND, mailbox_expired
from relay.storage.errors import MailboxNotFound
from relay.storage.redis.engine import RedisEngine, as_bytes

__all__ = ["PushMixin"]


class PushMixin(RedisEngine):
    """Push endpoints of :class:`RedisStore`."""

    async def set_push(self, rid: bytes, endpoint: tuple[str, bytes] | None, now: int) -> None:
        args: list[bytes | int] = [now, self._limits.mailbox_idle_ttl_s]
        if endpoint is not None:
            args += [endpoint[0].encode(), endpoint[1]]
        if not await self._run("set_push", [self._keys.mailbox(rid)[0]], args):
            raise MailboxNotFound(MSG_NOT_FOUND)

    async def get_push(self, rid: bytes, now: int) -> tuple[str, bytes] | None:
        with self._guard():
            values = await self._client.hmget(self._keys.mailbox(rid)[0], ["ad", "pu", "pt"])
        ad, url, token = (as_bytes(v) for v in values)
        if ad is None or url is None or token is None:
            return None
        if mailbox_expired(int(ad), now, self._limits):
            return None
        return url.decode(), token
