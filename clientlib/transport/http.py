"""The HTTP fallback transport for clients that cannot keep a socket open (protocol.md §2.1).

Every call is one or two stateless POSTs: owner operations fetch a challenge from
``/v1/challenge`` and then post the signed command to ``/v1/owner``; deposits go to
``/v1/deposit``, prekey bundle requests to ``/v1/bundle``, boundary and proof-of-work nonce
requests to ``/v1/boundaries`` and ``/v1/pow``. Bodies are frames with content
type ``application/x-blindrelay``. There are no pushes: the owner polls with
:meth:`HTTPTransport.fetch`, which also acknowledges.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, Iterable
from typing import Any

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.transport.api import FrameBuilder, RelayAPI, expect, owner_exchange
from clientlib.transport.base import MailboxCredential, SignFn, check_id
from clientlib.wire import (
    MAX_RELAY_FRAME_SIZE,
    OP_FETCH,
    SUPPORTED_VERSIONS,
    BlobOffset,
    ClientFrame,
    Deposit,
    EnvelopesFetched,
    ErrorReply,
    Fanout,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    RelayFrame,
    RequestChallenge,
    SignedOwnerCommand,
    StoredEnvelope,
    decode_relay_frame,
)
from clientlib.wire.client_frames import GetRouteKeys, Recall, Route
from clientlib.wire.limits import MAX_ACK_BATCH, MAX_FETCH_BATCH, MAX_REQUEST_ID

__all__ = ["CONTENT_TYPE", "HTTPTransport"]

#: The content type of every request and reply body.
CONTENT_TYPE = "application/x-blindrelay"

#: The endpoint of each frame type the HTTP transport sends.
_PATHS: dict[type[ClientFrame], str] = {
    RequestChallenge: "/v1/challenge",
    SignedOwnerCommand: "/v1/owner",
    Deposit: "/v1/deposit",
    Recall: "/v1/recall",
    Fanout: "/v1/fan",
    FetchBundle: "/v1/bundle",
    GetModerationKeys: "/v1/mkeys",
    GetBoundaries: "/v1/boundaries",
    GetPow: "/v1/pow",
    GetRouteKeys: "/v1/rkeys",
    Route: "/v1/route",
}


class HTTPTransport(RelayAPI):
    """Stateless request/reply access to a relay over HTTP.

    The operations shared with :class:`~clientlib.transport.WebSocketTransport` are those
    of :class:`~clientlib.transport.api.RelayAPI`; polling (:meth:`fetch`) is HTTP's own.

    Args:
        session: the aiohttp session to use.
        base_url: the relay's base URL (``http(s)://host:port``).
        request_timeout: seconds one call may take (all its round trips together).
        version: the frame version to send (byte 0); the path carries the major version.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        request_timeout: float = 10.0,
        version: int = SUPPORTED_VERSIONS.max,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._version = version
        self._ids = itertools.count(1)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session requests go over (blob transfers share it, §5.9)."""
        return self._session

    @property
    def base_url(self) -> str:
        return self._base

    async def fetch(
        self, cred: MailboxCredential, *, ack: Iterable[int] = (), max: int = 64
    ) -> tuple[tuple[StoredEnvelope, ...], bool]:
        """Acknowledge ``ack``, then peek at up to ``max`` of the oldest envelopes.

        Fetched envelopes stay stored until a later fetch acknowledges their ``seq``.

        Returns:
            ``(envelopes, more)``; ``more`` is true when further envelopes are waiting.

        Raises:
            LocalProtocolError: more than 256 acks or ``max`` outside ``0..256``.
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached in time or answered nonsense.
        """
        check_id(cred.rid, "rid")
        acks = tuple(sorted({s for s in ack if s > 0}))
        if len(acks) > MAX_ACK_BATCH:
            raise LocalProtocolError("at most 256 acks per fetch")
        if not 0 <= max <= MAX_FETCH_BATCH:
            raise LocalProtocolError("max must be within 0..256")
        reply = await self._owner_request(OP_FETCH, cred.rid, cred.sign, ack=acks or None, max=max)
        fetched = expect(reply, EnvelopesFetched)
        return fetched.envs, bool(fetched.more)

    # --- internals ------------------------------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids) & MAX_REQUEST_ID

    async def _request(self, build: FrameBuilder) -> RelayFrame:
        """POST the frame to the endpoint of its type (protocol.md §2.1).

        Raises:
            LocalProtocolError: the frame type has no endpoint (a WebSocket-only frame).
            RelayRejected: the reply is an ``err`` frame.
            TransportError: network failure, timeout, or an undecodable reply.
        """
        frame = build(self._next_id())
        path = _PATHS.get(type(frame))
        if path is None:
            raise LocalProtocolError(f"{type(frame).__name__} frames have no HTTP endpoint")
        return await self._post(path, frame)

    async def reveal_attachment(
        self,
        report: bytes,
        index: int,
        body: bytes | AsyncIterable[bytes],
    ) -> None:
        """Reveal the plaintext of attachment ``index`` of a report filed with
        ``attachment_hashes`` (protocol.md §5.9, "Reports", revision 8): ``PUT
        /v1/report/<report>/<index>``, streamed. The relay keeps it only if its SHA-256 is the
        committed hash.

        Raises:
            LocalProtocolError: ``report`` is not 16 bytes or ``index`` not 0..15.
            RelayRejected: ``FRANKING`` (the bytes are not the committed attachment),
                ``AUTH`` (no such report or attachment, or revealed already), ``TOO_LARGE``
                (above the relay's blob limit), ``STORAGE_FULL``.
            TransportError: the relay could not be reached in time, or answered nonsense.
        """
        check_id(report, "report")
        if not 0 <= index < 16:
            raise LocalProtocolError("an attachment index is 0..15")
        try:
            async with self._session.put(
                f"{self._base}/v1/report/{report.hex()}/{index}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
                # A whole file: no total bound, but the relay cuts a stalled body.
                timeout=aiohttp.ClientTimeout(total=None, sock_read=self._timeout.total),
            ) as resp:
                data = await resp.content.read(MAX_RELAY_FRAME_SIZE + 1)
                status = resp.status
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError("could not reach the relay") from exc
        try:
            _, reply = decode_relay_frame(data)
        except WireError:
            raise TransportError(f"the relay answered HTTP {status}") from None
        if isinstance(reply, ErrorReply):
            raise RelayRejected(reply.code)
        if status != 200 or not isinstance(reply, BlobOffset) or not reply.done:
            raise TransportError("the relay sent an unexpected reply")

    async def _owner_request(
        self, op: str, rid: bytes | None, sign: SignFn, **fields: Any
    ) -> RelayFrame:
        """Post for a challenge (``/v1/challenge``), then the signed command (``/v1/owner``)."""
        return await owner_exchange(self._request, self._version, op, rid, sign, **fields)

    async def _post(self, path: str, frame: ClientFrame) -> RelayFrame:
        """POST one frame and decode the reply frame.

        Raises:
            RelayRejected: the reply is an ``err`` frame.
            TransportError: network failure, timeout, or an undecodable reply.
        """
        body = frame.encode(self._version)
        try:
            async with self._session.post(
                self._base + path,
                data=body,
                headers={"Content-Type": CONTENT_TYPE},
                timeout=self._timeout,
            ) as resp:
                data = await resp.content.read(MAX_RELAY_FRAME_SIZE + 1)
                status = resp.status
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError("could not reach the relay") from exc
        try:
            _, reply = decode_relay_frame(data)
        except WireError:
            if status != 200:
                raise TransportError(f"the relay answered HTTP {status}") from None
            raise TransportError("the relay sent an undecodable reply") from None
        if isinstance(reply, ErrorReply):
            raise RelayRejected(reply.code)
        if status != 200:
            raise TransportError(f"the relay answered HTTP {status}")
        if getattr(reply, "id", None) != getattr(frame, "id", None):
            raise TransportError("the relay answered another request")
        return reply
