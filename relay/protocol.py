"""Sans-IO state of one relay WebSocket connection (protocol.md §3).

Theory of operation: the I/O shell (``relay.ws.handler``) feeds every received binary
message to :meth:`RelayConnection.receive_frame` and writes whatever bytes the connection
returns. The connection decodes and checks frames, keeps the challenges it issued and the
mailboxes it is subscribed to, and renders replies. It does no I/O, reads no clock (``now``
is passed in) and draws no randomness (nonces are passed in).

Rules:

1. Every challenge is bound to this connection (it lives only here), to one operation and to
   one mailbox (or to "no mailbox" for ``create``); it is removed by its first use, whatever
   the outcome, and expires ``challenge_ttl_s`` after issue.
2. A connection holds at most ``max_pending_challenges`` unused challenges and at most
   ``max_subscriptions`` subscriptions; beyond that requests fail with ``LIMIT``.
3. ``ack`` and ``unsub`` are accepted only for mailboxes this connection subscribed to;
   anything else is ``AUTH``, exactly like an unknown mailbox.
4. Any frame that fails to decode is answered with an ``err`` frame and changes nothing; the
   ``err`` echoes the frame's ``id`` whenever it can be read (:meth:`readable_id`).
5. Contact requests (deposits carrying a handle) and proof-of-work nonce requests share an
   allowance of ``requests_per_minute`` per fixed minute (``now // 60``) per connection;
   beyond it they are answered ``LIMIT`` before any work is done (protocol.md §4.9).
"""

from __future__ import annotations

from dataclasses import dataclass

from clientlib.errors import WireError
from clientlib.wire.codec import decode_map
from clientlib.wire.codes import ErrorCode
from clientlib.wire.frames import (
    ChallengeIssued,
    ClientFrame,
    ErrorReply,
    Hello,
    RelayLimits,
    RequestChallenge,
    decode_client_frame,
)
from clientlib.wire.version import SUPPORTED_VERSIONS
from relay.auth import challenge_binding, check_challenge_request
from relay.errors import RelayError, from_wire_error

__all__ = ["ConnectionLimits", "RelayConnection", "readable_id"]

MAX_REQUEST_ID = 2**32 - 1


def readable_id(data: bytes, max_frame: int) -> int | None:
    """The request id of a frame that failed to decode, if it can be read (protocol.md
    §3.2): the frame is within the size limit, of a supported version, one msgpack map, and
    its ``id`` is a u32. Only called on the error path (WebSocket and HTTP)."""
    try:
        _, fields = decode_map(data, max_size=max_frame)
    except WireError:
        return None
    value = fields.get("id")
    return value if type(value) is int and 0 <= value <= MAX_REQUEST_ID else None


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_frame: int
    max_pending_challenges: int
    max_subscriptions: int
    challenge_ttl_s: int
    requests_per_minute: int = 30


class RelayConnection:
    """Per-connection protocol state; see the module docstring."""

    __slots__ = ("_challenges", "_requests", "limits", "subscriptions", "version")

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.version = SUPPORTED_VERSIONS.max
        self._challenges: dict[bytes, tuple[bytes, int]] = {}
        self.subscriptions: set[bytes] = set()
        self._requests = (0, 0)  # (minute, contact requests and pow nonces in it)

    def count_request(self, now: int) -> None:
        """Count one contact request or proof-of-work nonce request (rule 5).

        Raises:
            RelayError: ``LIMIT`` when this minute's allowance is used up (not counted).
        """
        minute = now // 60
        window, used = self._requests
        if window != minute:
            used = 0
        if used >= self.limits.requests_per_minute:
            raise RelayError(ErrorCode.LIMIT)
        self._requests = (minute, used + 1)

    @staticmethod
    def hello(limits: RelayLimits) -> bytes:
        return Hello(min=SUPPORTED_VERSIONS.min, max=SUPPORTED_VERSIONS.max, limits=limits).encode(
            SUPPORTED_VERSIONS.max
        )

    def readable_id(self, data: bytes) -> int | None:
        """:func:`readable_id` under this connection's frame limit."""
        return readable_id(data, self.limits.max_frame)

    def receive_frame(self, data: bytes) -> ClientFrame:
        """Decode one client frame.

        Raises:
            RelayError: ``MALFORMED``, ``VERSION`` or ``TOO_LARGE``; nothing changed.
        """
        try:
            version, frame = decode_client_frame(data, max_size=self.limits.max_frame)
        except WireError as exc:
            raise from_wire_error(exc) from None
        self.version = version
        return frame

    def issue_challenge(self, frame: RequestChallenge, nonce: bytes, now: int) -> bytes:
        """Remember a new challenge and return the ``chal`` reply.

        Raises:
            RelayError: ``MALFORMED`` (``rid`` missing or extra, protocol.md §3.1), ``LIMIT``
                when too many challenges are pending.
        """
        check_challenge_request(frame.op, frame.rid)
        if len(self._challenges) >= self.limits.max_pending_challenges:
            self._expire(now)
            if len(self._challenges) >= self.limits.max_pending_challenges:
                raise RelayError(ErrorCode.LIMIT)
        self._challenges[nonce] = (
            challenge_binding(frame.op, frame.rid),
            now + self.limits.challenge_ttl_s,
        )
        return ChallengeIssued(id=frame.id, nonce=nonce).encode(self.version)

    async def take_challenge(self, nonce: bytes, now: int) -> bytes | None:
        """Consume a challenge (rule 1). Async to match the HTTP challenge store."""
        entry = self._challenges.pop(nonce, None)
        if entry is None or entry[1] < now:
            return None
        return entry[0]

    def _expire(self, now: int) -> None:
        for nonce in [n for n, (_, exp) in self._challenges.items() if exp < now]:
            del self._challenges[nonce]

    def can_subscribe(self, rid: bytes) -> bool:
        return rid in self.subscriptions or len(self.subscriptions) < self.limits.max_subscriptions

    def require_subscribed(self, rid: bytes) -> None:
        """Raises: RelayError ``AUTH`` unless this connection subscribed to ``rid``."""
        if rid not in self.subscriptions:
            raise RelayError(ErrorCode.AUTH)

    def error(self, code: ErrorCode, request_id: int | None = None) -> bytes:
        return ErrorReply(code=code.value, id=request_id).encode(self.version)
