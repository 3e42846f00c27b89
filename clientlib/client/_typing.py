"""Typing indicators, throttled (sans-IO; protocol.md §22.12).

Sender side, :class:`TypingThrottle`: an app may call ``typing(True)`` on every keystroke;
what goes out is a start, then at most one keep-alive every :data:`TYPING_KEEPALIVE`
seconds, and one stop (an explicit ``typing(False)``, or sending the message). At most
:data:`TYPING_BUDGET` indicators go out between two messages received from the contact:
an indicator sent while the peer is offline is dropped by the relay, and each one the
peer never sees becomes a skipped message key on its side (§12.3), so the budget bounds
that cost.

Receiver side, :class:`TypingWatch`: a start or keep-alive shows "typing" until a stop,
a message from the contact, or :data:`TYPING_TIMEOUT` seconds without a keep-alive.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "TYPING_BUDGET",
    "TYPING_KEEPALIVE",
    "TYPING_TIMEOUT",
    "TypingThrottle",
    "TypingWatch",
]

#: Seconds between keep-alives while the user keeps typing.
TYPING_KEEPALIVE = 5.0
#: Seconds after the last start/keep-alive at which the receiver clears the indicator.
TYPING_TIMEOUT = 8.0
#: Indicators sent at most between two messages received from the contact.
TYPING_BUDGET = 64

Send = Literal["start", "stop"] | None


class TypingThrottle:
    """What to send for one user's typing, per conversation."""

    def __init__(self) -> None:
        self._active: dict[bytes, float] = {}  # cid -> when the last start/keep-alive left
        self._spent: dict[bytes, int] = {}

    def typing(self, cid: bytes, active: bool, now: float) -> Send:
        """The user is (``active``) or stopped typing: ``"start"`` (a start or keep-alive:
        on=1), ``"stop"`` (on=0) or None (nothing to send now)."""
        last = self._active.get(cid)
        if not active:
            if last is None:
                return None
            del self._active[cid]
            return self._spend(cid, "stop")
        if last is not None and now - last < TYPING_KEEPALIVE:
            return None
        out = self._spend(cid, "start")
        if out is not None:
            self._active[cid] = now
        return out

    def sent_message(self, cid: bytes) -> None:
        """A message went out: it ends typing on the peer's side by itself."""
        self._active.pop(cid, None)

    def heard_from(self, cid: bytes) -> None:
        """A message arrived from the contact: the peer is around, the budget refills."""
        self._spent.pop(cid, None)

    def _spend(self, cid: bytes, what: Send) -> Send:
        n = self._spent.get(cid, 0)
        if n >= TYPING_BUDGET:
            return None
        self._spent[cid] = n + 1
        return what


class TypingWatch:
    """Whether each contact is typing, as shown to our user."""

    def __init__(self) -> None:
        self._until: dict[bytes, float] = {}

    def indicator(self, cid: bytes, on: bool, now: float) -> bool | None:
        """An indicator arrived; returns the new state if it changed (else None)."""
        was = cid in self._until
        if on:
            self._until[cid] = now + TYPING_TIMEOUT
            return None if was else True
        self._until.pop(cid, None)
        return False if was else None

    def message(self, cid: bytes) -> bool | None:
        """A message from the contact arrived: typing ended (False if it was shown)."""
        return False if self._until.pop(cid, None) is not None else None

    def expired(self, now: float) -> list[bytes]:
        """Contacts whose indicator timed out (now cleared)."""
        gone = [cid for cid, t in self._until.items() if t <= now]
        for cid in gone:
            del self._until[cid]
        return gone

    def next_timeout(self) -> float | None:
        return min(self._until.values(), default=None)
