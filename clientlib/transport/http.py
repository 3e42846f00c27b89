"""The HTTP fallback transport for clients that cannot keep a socket open (protocol.md §2.1).

Every call is one or two stateless POSTs: owner operations fetch a challenge from
``/v1/challenge`` and then post the signed command to ``/v1/owner``; deposits go to
``/v1/deposit`` and prekey bundle requests to ``/v1/bundle``. Bodies are frames with content
type ``application/x-blindrelay``. There are no pushes: the owner polls with
:meth:`HTTPTransport.fetch`, which also acknowledges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.transport.base import MailboxCredential, SignFn, prekey_chunks
from clientlib.wire import (
    ENVELOPE_ID_SIZE,
    MAILBOX_ID_SIZE,
    MAX_RELAY_FRAME_SIZE,
    OP_CREATE,
    OP_DELETE,
    OP_FETCH,
    OP_PREKEYS,
    SUPPORTED_VERSIONS,
    BundleIssued,
    ChallengeIssued,
    ClientFrame,
    Deposit,
    EnvelopesFetched,
    ErrorReply,
    FetchBundle,
    MailboxCreated,
    Ok,
    OwnerCommand,
    PreKeysStored,
    RelayFrame,
    RequestChallenge,
    SignedOwnerCommand,
    StoredEnvelope,
    decode_relay_frame,
)
from clientlib.wire.limits import MAX_ACK_BATCH, MAX_FETCH_BATCH, MAX_REQUEST_ID

__all__ = ["CONTENT_TYPE", "HTTPTransport"]

#: The content type of every request and reply body.
CONTENT_TYPE = "application/x-blindrelay"


class HTTPTransport:
    """Stateless request/reply access to a relay over HTTP.

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

    async def create_mailbox(self, owner_key: bytes, sign: SignFn) -> tuple[bytes, bytes]:
        """Create a mailbox owned by ``owner_key`` (proof of possession by ``sign``).

        Returns:
            ``(rid, sid)``.

        Raises:
            RelayRejected: the relay refused (``MALFORMED`` invalid key, ``AUTH``).
            TransportError: the relay could not be reached or answered nonsense.
        """
        reply = await self._owner(OP_CREATE, None, sign, key=owner_key)
        if not isinstance(reply, MailboxCreated):
            raise TransportError("the relay sent an unexpected reply")
        return reply.rid, reply.sid

    async def delete_mailbox(self, cred: MailboxCredential) -> None:
        """Delete the mailbox and everything it holds.

        Raises:
            RelayRejected: ``AUTH`` for an unknown mailbox or wrong key.
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        reply = await self._owner(OP_DELETE, cred.rid, cred.sign)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

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
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        acks = tuple(sorted({s for s in ack if s > 0}))
        if len(acks) > MAX_ACK_BATCH:
            raise LocalProtocolError("at most 256 acks per fetch")
        if not 0 <= max <= MAX_FETCH_BATCH:
            raise LocalProtocolError("max must be within 0..256")
        reply = await self._owner(OP_FETCH, cred.rid, cred.sign, ack=acks or None, max=max)
        if not isinstance(reply, EnvelopesFetched):
            raise TransportError("the relay sent an unexpected reply")
        return reply.envs, bool(reply.more)

    async def deposit(
        self, sid: bytes, ct: bytes, *, eid: bytes, flags: int = 0, fc: bytes | None = None
    ) -> None:
        """Deposit one envelope; returns once the relay has stored it.

        Raises:
            RelayRejected: the relay refused (``AUTH`` unknown sid, ``QUOTA``, ...).
            TransportError: no reply in time or the relay is unreachable (retry with ``eid``).
        """
        _check_id(sid, "sid")
        if len(eid) != ENVELOPE_ID_SIZE:
            raise LocalProtocolError("eid must be 16 bytes")
        frame = Deposit(id=self._next_id(), sid=sid, eid=eid, flags=flags, ct=ct, fc=fc)
        reply = await self._post("/v1/deposit", frame)
        if not isinstance(reply, Ok):
            raise TransportError("the relay sent an unexpected reply")

    async def put_prekeys(
        self,
        cred: MailboxCredential,
        *,
        static: bytes | None = None,
        one_time: Sequence[bytes] = (),
        replace: bool = False,
    ) -> tuple[int, bool]:
        """Upload prekey material of ``cred``'s mailbox (protocol.md §4.7), or ask its status.

        The relay stores the blobs as they are (encrypt them first: it must learn nothing).
        ``one_time`` is sent in ``keys`` commands of at most 32 items; the first one carries
        ``static`` (replacing the stored static part) and ``replace`` (deleting every stored
        one-time item first). Each command is applied atomically; if a later one fails, the
        earlier ones stay applied. With nothing to upload this is a status query.

        Returns:
            ``(left, has_static)`` from the last reply: one-time items the relay now holds,
            and whether it holds a static part.

        Raises:
            LocalProtocolError: a blob is empty or too large.
            RelayRejected: ``AUTH`` (no such mailbox or wrong key), ``QUOTA`` (the relay would
                hold more one-time items than it allows; that command changed nothing),
                ``MALFORMED`` (a relay that predates prekey hosting), ``TOO_LARGE`` (the
                relay's frame limit is below a full upload).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check_id(cred.rid, "rid")
        result = (0, False)
        for chunk_static, otk, chunk_replace in prekey_chunks(static, one_time, replace):
            reply = await self._owner(
                OP_PREKEYS, cred.rid, cred.sign, static=chunk_static, otk=otk, replace=chunk_replace
            )
            if not isinstance(reply, PreKeysStored):
                raise TransportError("the relay sent an unexpected reply")
            result = (reply.left, bool(reply.static))
        return result

    async def fetch_bundle(self, sid: bytes) -> tuple[bytes, bytes | None]:
        """Fetch the prekey bundle of the mailbox with send id ``sid``.

        The relay hands out one one-time item at most once: the item returned is consumed.

        Returns:
            ``(static, one_time)``; ``one_time`` is None when the mailbox has none left or
            its hourly allowance is used up (fall back to the last-resort key).

        Raises:
            RelayRejected: ``AUTH`` (no such mailbox, or it has uploaded no static part),
                ``MALFORMED`` (a relay that predates prekey hosting).
            TransportError: the relay could not be reached or answered nonsense (a retry
                may consume another item).
        """
        _check_id(sid, "sid")
        reply = await self._post("/v1/bundle", FetchBundle(id=self._next_id(), sid=sid))
        if not isinstance(reply, BundleIssued):
            raise TransportError("the relay sent an unexpected reply")
        return reply.static, reply.otk

    # --- internals ------------------------------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids) & MAX_REQUEST_ID

    async def _owner(
        self,
        op: str,
        rid: bytes | None,
        sign: SignFn,
        *,
        key: bytes | None = None,
        ack: tuple[int, ...] | None = None,
        max: int | None = None,
        static: bytes | None = None,
        otk: tuple[bytes, ...] | None = None,
        replace: int | None = None,
    ) -> RelayFrame:
        chal = await self._post(
            "/v1/challenge", RequestChallenge(id=self._next_id(), op=op, rid=rid)
        )
        if not isinstance(chal, ChallengeIssued):
            raise TransportError("the relay sent an unexpected reply")
        cmd = OwnerCommand(
            op=op,
            nonce=chal.nonce,
            rid=rid,
            key=key,
            ack=ack,
            max=max,
            static=static,
            otk=otk,
            replace=replace,
        ).encode(self._version)
        frame = SignedOwnerCommand(id=self._next_id(), cmd=cmd, sig=sign(cmd))
        return await self._post("/v1/owner", frame)

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


def _check_id(value: bytes, name: str) -> None:
    if len(value) != MAILBOX_ID_SIZE:
        raise LocalProtocolError(f"{name} must be {MAILBOX_ID_SIZE} bytes")
