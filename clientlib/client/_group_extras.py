"""Files, typing and receipts in groups (protocol.md §25.5, §26.8), beside
:class:`~clientlib.client._groups.Groups`, which owns the records and calls in: a file is
uploaded to a blob of our own group mailbox and announced in one type-1 message; typing
indicators are online-only control envelopes; receipts go to each author alone in direct
envelopes, batched and delayed as for a contact (§22.11).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from clientlib.client._group_records import _Live, _pack
from clientlib.client._receipts import ReceiptDelay, ReceiptScheduler, chunks
from clientlib.client._typing import TYPING_TIMEOUT, TypingThrottle, TypingWatch
from clientlib.client.types import Attachment, ClientEvent, ClientWarning, GroupEvent
from clientlib.crypto.group import GroupError, seal_control
from clientlib.crypto.padding import pad
from clientlib.errors import LocalProtocolError, TransportError
from clientlib.wire import attachment_capability_hash
from clientlib.wire.limits import FLAG_ONLINE_ONLY, MAX_FANOUT

if TYPE_CHECKING:
    from clientlib.client._groups import Groups

__all__ = ["GroupExtras"]

log = logging.getLogger("clientlib.client.groups")

#: A typing indicator whose timestamp is further than this from our clock is ignored (a
#: replay by the relay of an old one, or a skewed clock).
TYPING_FRESH = 30
#: Messages a group record keeps (as :data:`clientlib.client._groups.KEEP_MESSAGES`).
KEEP_MESSAGES = 200


class GroupExtras:
    """Files, typing and receipts of the groups of one client (see the module docstring)."""

    def __init__(self, groups: Groups, receipt_delay: ReceiptDelay, rng: random.Random) -> None:
        self._g = groups
        self.throttle = TypingThrottle()  # per group
        self.watch = TypingWatch()  # per gid || gpk
        #: Receipts owed, per gid || author gpk (§26.8), each batch with its own delay.
        self.receipts = ReceiptScheduler(receipt_delay, rng)
        self._receipt_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def close(self) -> None:
        """The client is closing: timers stop; group receipts still waiting are dropped
        (never sent at close, §22.11; not kept across restarts, §26.8)."""
        self._closed = True
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
            self._receipt_timer = None

    # --- files (§25.5) ----------------------------------------------------------------------

    async def media_target(self, gid: bytes) -> tuple[bytes, bytes, int | None]:
        """Where a file for the group is uploaded (protocol.md §25.5): our own group mailbox,
        with this epoch's capability, its attachment capability hash registered first (we
        are its owner); ``(sid, cap, ttl)``, ``ttl`` the group's disappearing timer."""
        self._g.check_can_post(gid, media=True)
        g = self._g.live[gid]
        cap = self._g._cap(g, g.rec.sid)
        await self._g._own_caps(g, add=[attachment_capability_hash(g.rec.sid, cap)])
        return g.rec.sid, cap, g.state.settings.ttl or None

    async def send_file(self, gid: bytes, descriptor: bytes, ph: bytes, mid: bytes) -> GroupEvent:
        """The ``file`` message of an uploaded blob (``descriptor``: the §25.3 content,
        ``ph``: the plaintext's SHA-256), fanned out like a text (protocol.md §26.5)."""
        self._g.check_can_post(gid, media=True)
        from clientlib.client.content import FileMessage, decode_content

        fm = decode_content(descriptor)
        assert isinstance(fm, FileMessage)
        return await self._g._send_plain(
            gid,
            mid,
            fm.text or "",
            lambda _now: ["file", mid, fm.ts, descriptor, ph],
            (descriptor, ph),
        )

    async def typing(self, gid: bytes, active: bool) -> bool:
        """A typing indicator to the group (§26.8): a control envelope, online-only, throttled
        as for a contact (§22.12); only while our typing setting for the group is on and we
        may post. Best effort: True if one left."""
        g = self._g.live[gid]
        rec, state = g.rec, g.state
        if not rec.typing or rec.status != "active" or rec.es is None:
            return False
        if rec.es_epoch != state.epoch:
            return False
        if state.settings.post == "admins" and state.role_of(g.me) not in ("owner", "admin"):
            return False
        entries = [(m.sid, self._g._cap(g, m.sid)) for m in self._g._others(g)]
        if not entries:
            return False
        what = self.throttle.typing(gid, active, time.monotonic())
        if what is None:
            return False
        from clientlib.client._groups import BUCKETS, OVERHEAD

        plain = _pack(["typ", 1 if what == "start" else 0, self._g._now()])
        body = pad(plain, overhead=OVERHEAD[2], buckets=BUCKETS)
        ct = seal_control(rec.keys, gid, rec.es_epoch, rec.es, body, self._g._book.rng)
        try:
            for start in range(0, len(entries), MAX_FANOUT):
                await self._g._link.depositor().fanout(
                    entries[start : start + MAX_FANOUT],
                    ct,
                    eid=self._g._book.rng(16),
                    flags=FLAG_ONLINE_ONLY,
                )
        except TransportError as exc:  # RelayRejected included: typing is ephemeral
            log.debug("group typing indicator not sent: %s", type(exc).__name__)
            return False
        return True

    async def set_typing(self, gid: bytes, on: bool) -> None:
        """Our typing setting for the group (not shared: the others see only whether
        indicators arrive)."""
        g = self._g.live[gid]
        async with self._g._book.lock:
            g.rec.typing = bool(on)
            self._g._put(g)
            await self._g._book.save()

    def _typing_expired(self) -> None:
        if self._closed:
            return
        for key in self.watch.expired(time.monotonic()):
            g = self._g.live.get(key[:16])
            if g is not None:
                m = g.state.members.get(key[16:])
                who = m.name if m is not None else key[16:].hex()[:8]
                self._g._emit(GroupEvent(key[:16].hex(), "stopped_typing", member=who))

    def on_typing(self, g: _Live, gpk: bytes, msg: list[Any], events: list[ClientEvent]) -> None:
        on, ts = msg[1], msg[2]
        if on not in (0, 1) or not isinstance(ts, int) or isinstance(ts, bool):
            raise GroupError("bad control")
        sender = g.state.members[gpk]
        if gpk == g.me or not g.rec.typing or g.rec.status != "active":
            return
        if g.state.settings.post == "admins" and sender.role == "member":
            return
        if abs(self._g._now() - ts) > TYPING_FRESH:
            return
        key = g.rec.gid + gpk
        changed = self.watch.indicator(key, bool(on), time.monotonic())
        if changed is not None:
            gid = g.rec.gid.hex()
            events.append(
                GroupEvent(gid, "typing", member=sender.name)
                if changed
                else GroupEvent(gid, "stopped_typing", member=sender.name)
            )
        if on:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to time out
                asyncio.get_running_loop().call_later(TYPING_TIMEOUT + 0.05, self._typing_expired)

    # --- receipts (§26.8): to the author only, batched and delayed as pairwise --------------

    def owe(self, g: _Live, author: bytes, kind: str, mid: bytes) -> None:
        if not g.rec.receipts or author == g.me or g.rec.status != "active":
            return
        self.receipts.note(g.rec.gid + author, kind, mid, time.monotonic())
        self._arm_receipts()

    def _arm_receipts(self) -> None:
        due = self.receipts.next_due()
        if due is None or self._closed:
            return
        if self._receipt_timer is not None:
            self._receipt_timer.cancel()
        with contextlib.suppress(RuntimeError):  # no running loop: sent at the next note
            loop = asyncio.get_running_loop()
            delay = max(0.0, due - time.monotonic())
            self._receipt_timer = loop.call_later(
                delay, lambda: self._g._run(self.flush_receipts())
            )

    async def flush_receipts(self) -> None:
        """Send the receipt batches that are due: one direct message (type 3) per author,
        at most 16 ids each; a batch whose author is gone, or whose group has receipts off,
        is dropped."""
        self._receipt_timer = None
        for key, dlv, rd in self.receipts.due(time.monotonic()):
            g = self._g.live.get(key[:16])
            if g is None or not g.rec.receipts or g.rec.status != "active":
                continue
            author = g.state.members.get(key[16:])
            if author is None:
                continue
            for part_dlv, part_rd in chunks(dlv, rd):
                try:
                    await self._g._direct(g, author, _pack(["rcp", part_dlv, part_rd]))
                except (TransportError, LocalProtocolError) as exc:
                    log.info("group receipt not delivered: %s", type(exc).__name__)
        self._arm_receipts()

    async def mark_read(self, gid: bytes, ids: Sequence[bytes] | None) -> int:
        """Owe a read receipt for each received message (``ids``, default: all) not marked
        read before; returns how many were marked."""
        g = self._g.live[gid]
        n = 0
        async with self._g._book.lock:
            for m in g.rec.msgs:
                mid, gpk = m[0], m[1]
                if gpk == g.me or mid in g.rec.seen or (ids is not None and mid not in ids):
                    continue
                g.rec.seen = [*g.rec.seen, mid][-KEEP_MESSAGES:]
                self.owe(g, gpk, "rd", mid)
                n += 1
            self._g._put(g)
            await self._g._book.save()
        return n

    async def set_receipts(self, gid: bytes, on: bool) -> None:
        g = self._g.live[gid]
        async with self._g._book.lock:
            g.rec.receipts = bool(on)
            self._g._put(g)
            await self._g._book.save()

    def receipts_of(self, gid: bytes, mid: bytes) -> list[tuple[str, str]]:
        """``(member name, "delivered" | "read")`` for one of our messages."""
        g = self._g.live[gid]
        out = []
        for gpk, state in g.rec.acks.get(mid, {}).items():
            m = g.state.members.get(gpk)
            out.append((m.name if m is not None else gpk.hex()[:8], _RECEIPT[state]))
        return out

    def on_receipt(self, g: _Live, gpk: bytes, msg: list[Any], events: list[ClientEvent]) -> None:
        _, dlv, rd = msg
        if not isinstance(dlv, list) or not isinstance(rd, list) or len(dlv) + len(rd) > 16:
            raise GroupError("bad receipt")
        sender = g.state.members.get(gpk)
        if sender is None or not g.rec.receipts:
            return
        mine = {m[0] for m in g.rec.msgs if m[1] == g.me}
        for ids, state in ((dlv, 1), (rd, 2)):
            for mid in ids:
                if not isinstance(mid, bytes) or mid not in mine:
                    events.append(ClientWarning("forged_reference", "group receipt", None))
                    continue
                held = g.rec.acks.setdefault(mid, {})
                if held.get(gpk, 0) >= state:
                    continue
                held[gpk] = state
                events.append(
                    GroupEvent(
                        g.rec.gid.hex(),
                        "receipt",
                        member=sender.name,
                        text=_RECEIPT[state],
                        message_id=mid.hex(),
                    )
                )
        # Receipts for messages the record no longer keeps are forgotten with them.
        g.rec.acks = {k: v for k, v in g.rec.acks.items() if k in mine}

    def find_file(self, gid: bytes, mid: bytes) -> tuple[bytes, bytes, bool]:
        """``(descriptor, plaintext hash, media on)`` of a group message's file.

        Raises:
            LocalProtocolError: no such group or file.
        """
        g = self._g.live.get(gid)
        if g is None:
            raise LocalProtocolError("no such group")
        for m in g.rec.msgs:
            if m[0] == mid and len(m) >= 6:
                return m[4], m[5], bool(g.state.settings.media)
        raise LocalProtocolError("the message is gone")


_RECEIPT = {1: "delivered", 2: "read"}


def file_content(msg: list[Any]) -> tuple[str, tuple[bytes, bytes]]:
    """The caption and ``(descriptor, plaintext hash)`` of a ``["file", id, ts, descriptor,
    ph]`` group plaintext (protocol.md §26.5).

    Raises:
        GroupError: malformed, or a descriptor that is not a ``file`` content of this id.
    """
    from clientlib.client.content import FileMessage, decode_content
    from clientlib.errors import WireError

    if len(msg) != 5 or not isinstance(msg[3], bytes) or not isinstance(msg[4], bytes):
        raise GroupError("bad content")
    if len(msg[4]) != 32:
        raise GroupError("bad content")
    try:
        fm = decode_content(msg[3])
    except WireError:
        raise GroupError("bad file descriptor") from None
    if not isinstance(fm, FileMessage) or fm.id != msg[1] or fm.vo:
        raise GroupError("bad file descriptor")
    return fm.text or "", (msg[3], msg[4])


def group_attachment(gid: bytes, mid: bytes, file: Sequence[Any]) -> Attachment | None:
    from clientlib.client._media import safe_filename
    from clientlib.client.content import FileMessage, decode_content

    fm = decode_content(file[0])
    if not isinstance(fm, FileMessage):
        return None
    return Attachment(
        "",
        mid.hex(),
        safe_filename(fm.name),
        fm.mime,
        fm.size,
        thumbnail=fm.thumb,
        descriptor=file[0],
        plaintext_hash=file[1],
        group_id=gid.hex(),
    )
