"""The HTTP blob transport (protocol.md §5.9, revision 8): create an upload, send the
ciphertext resumably, download it resumably with ranges.

::

    blobs = BlobTransport(session, "https://relay.example")
    created = await blobs.create(sid, size, cap=cap, ttl=3600)
    await blobs.upload(created.blob, created.ut, size, body)     # body(offset) -> bytes from there
    await blobs.download(created.blob, created.rt, size, sink)   # sink(piece) gets every byte once

Uploads and downloads stream: neither holds more than one piece (at most 1 MiB) of a blob.
A connection cut in the middle of an upload is followed by ``GET /v1/blob/<id>/upload`` (how
many bytes the relay holds) and a ``PUT`` from there; a cut download goes on with ``Range:
bytes=<received>-`` (a blob with a download limit cannot: each ``GET`` counts, §5.9). Tokens
travel in the ``Blindrelay-Token`` header, never in a URL, and never appear in errors or logs.

This layer holds no keys: what it moves is ciphertext (:mod:`clientlib.crypto.attachment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import aiohttp

from clientlib.errors import LocalProtocolError, RelayRejected, TransportError, WireError
from clientlib.wire import MAX_RELAY_FRAME_SIZE, SUPPORTED_VERSIONS, ErrorReply, decode_relay_frame
from clientlib.wire.client_frames import MAX_BLOB_DOWNLOADS, MAX_BLOB_SIZE, CreateBlob
from clientlib.wire.limits import MAX_REQUEST_ID
from clientlib.wire.relay_frames import BlobCreated, BlobOffset

__all__ = [
    "BLOB_ID_SIZE",
    "TOKEN_HEADER",
    "BlobBody",
    "BlobSink",
    "BlobTransport",
    "Progress",
]

log = logging.getLogger("clientlib.transport.blobs")

BLOB_ID_SIZE: Final = 16
TOKEN_SIZE: Final = 32
#: The header that carries the upload or read token (64 lowercase hex digits).
TOKEN_HEADER: Final = "Blindrelay-Token"  # noqa: S105 (a header name, not a secret)
_CONTENT_TYPE: Final = "application/x-blindrelay"
#: Attempts after a cut connection before an upload or download gives up. Each attempt
#: that moves the offset forward resets the count: only a relay that makes no progress at
#: all is abandoned.
DEFAULT_RETRIES: Final = 5
#: Bytes read from a download response at a time.
_READ: Final = 1 << 20

#: ``body(offset)``: the ciphertext from byte ``offset`` to the end, in pieces.
BlobBody = Callable[[int], AsyncIterator[bytes]]
#: ``sink(piece)``: the next piece of a download (awaited before more is read).
BlobSink = Callable[[bytes], Awaitable[None]]
#: ``progress(done, total)``: bytes of the blob moved so far.
Progress = Callable[[int, int], None]


def _check(value: bytes, size: int, name: str) -> None:
    if type(value) is not bytes or len(value) != size:
        raise LocalProtocolError(f"{name} must be {size} bytes")


class BlobTransport:
    """Blob upload and download against one relay (protocol.md §5.9).

    Args:
        session: the aiohttp session (the client's, so a proxy setting applies here too).
        base_url: the relay's base URL (``http(s)://host:port``).
        request_timeout: seconds a request may wait for the relay to connect, or between two
            reads of a streamed body (a stall that long counts as a cut).
        retries: resumes tried after cuts that made no progress (see :data:`DEFAULT_RETRIES`).
        version: the frame version of ``blob+``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        request_timeout: float = 10.0,
        retries: int = DEFAULT_RETRIES,
        version: int = SUPPORTED_VERSIONS.max,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=request_timeout, sock_read=request_timeout
        )
        self._short = aiohttp.ClientTimeout(total=request_timeout)
        self._retries = retries
        self._version = version
        self._ids = 0

    def __repr__(self) -> str:
        return "BlobTransport(<relay>)"

    # --- create ---------------------------------------------------------------------------

    async def create(
        self,
        sid: bytes,
        size: int,
        *,
        cap: bytes | None = None,
        hdl: bytes | None = None,
        ttl: int | None = None,
        dl: int | None = None,
    ) -> BlobCreated:
        """``POST /v1/blob``: start an upload of ``size`` ciphertext bytes for the mailbox
        ``sid`` (``cap`` for a pairwise mailbox, ``hdl`` for a contact address).

        Raises:
            LocalProtocolError: a field out of range.
            RelayRejected: ``TOO_LARGE`` (over the relay's blob limit), ``AUTH`` (no such
                mailbox, or the capability is not registered), ``BOUNDARY`` (the mailbox
                takes no attachments from us: media off, or a contact address with ``att``
                = 0), ``QUOTA`` (the mailbox holds too many blobs), ``MALFORMED`` (a relay
                before revision 8 stores no blobs).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check(sid, 16, "sid")
        if not 1 <= size <= MAX_BLOB_SIZE:
            raise LocalProtocolError("a blob is 1 byte to 2^40 bytes")
        if dl is not None and not 1 <= dl <= MAX_BLOB_DOWNLOADS:
            raise LocalProtocolError(f"dl must be within 1..{MAX_BLOB_DOWNLOADS}")
        if ttl is not None and not 1 <= ttl < 2**32:
            raise LocalProtocolError("ttl must be a u32 of at least 1")
        self._ids = (self._ids + 1) & MAX_REQUEST_ID
        frame = CreateBlob(id=self._ids, sid=sid, size=size, cap=cap, hdl=hdl, ttl=ttl, dl=dl)
        body = frame.encode(self._version)
        try:
            async with self._session.post(
                self._base + "/v1/blob",
                data=body,
                headers={"Content-Type": _CONTENT_TYPE},
                timeout=self._short,
            ) as resp:
                reply = await self._frame(resp)
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError("could not reach the relay") from exc
        if not isinstance(reply, BlobCreated) or reply.id != frame.id:
            raise TransportError("the relay answered another request")
        return reply

    # --- upload ---------------------------------------------------------------------------

    async def upload_offset(self, blob: bytes, ut: bytes) -> BlobOffset:
        """``GET /v1/blob/<id>/upload``: how many bytes the relay durably holds.

        Raises:
            RelayRejected: ``AUTH`` (unknown or expired upload, wrong token).
            TransportError: the relay could not be reached or answered nonsense.
        """
        _check(blob, BLOB_ID_SIZE, "blob")
        _check(ut, TOKEN_SIZE, "ut")
        try:
            async with self._session.get(
                f"{self._base}/v1/blob/{blob.hex()}/upload",
                headers={TOKEN_HEADER: ut.hex()},
                timeout=self._short,
            ) as resp:
                reply = await self._frame(resp)
        except TimeoutError:
            raise TransportError("the relay did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise TransportError("could not reach the relay") from exc
        if not isinstance(reply, BlobOffset):
            raise TransportError("the relay sent an unexpected reply")
        return reply

    async def upload(
        self,
        blob: bytes,
        ut: bytes,
        size: int,
        body: BlobBody,
        *,
        progress: Progress | None = None,
    ) -> None:
        """Send the whole blob, resuming after every cut where the relay says it holds up to.

        ``body(offset)`` must yield the same bytes for the same offsets every time (the
        attachment encryption is deterministic in its key, protocol.md §25.2).

        Raises:
            RelayRejected: ``AUTH``, ``TOO_LARGE``, ``STORAGE_FULL``, ``MALFORMED`` as the
                relay answered (not a cut: nothing to resume).
            TransportError: the relay stayed unreachable for :data:`DEFAULT_RETRIES`
                attempts in a row without taking any byte.
        """
        _check(blob, BLOB_ID_SIZE, "blob")
        _check(ut, TOKEN_SIZE, "ut")
        offset, failures, delay = 0, 0, 0.1
        while True:
            try:
                done = await self._put(blob, ut, offset, size, body, progress)
                if done:
                    return
                failures = 0  # a PUT that ended early without error: ask and go on
            except (aiohttp.ClientError, TimeoutError, _Cut) as exc:
                failures += 1
                if failures > self._retries:
                    raise TransportError("the upload was cut too often") from exc
                log.debug("upload cut; resuming")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            try:
                state = await self.upload_offset(blob, ut)
            except RelayRejected:
                raise
            except TransportError:
                failures += 1
                if failures > self._retries:
                    raise
                await asyncio.sleep(delay)
                continue
            if state.done:
                if progress is not None:
                    progress(size, size)
                return
            if state.off > offset:
                failures = 0
            if state.off > size:
                raise TransportError("the relay holds more than the blob")
            offset = state.off

    async def _put(
        self,
        blob: bytes,
        ut: bytes,
        offset: int,
        size: int,
        body: BlobBody,
        progress: Progress | None,
    ) -> bool:
        sent = offset
        pieces = body(offset)

        async def stream() -> AsyncIterator[bytes]:
            nonlocal sent
            async for piece in pieces:
                sent += len(piece)
                yield piece
                if progress is not None:
                    progress(sent, size)

        try:
            return await self._send(blob, ut, offset, size, stream())
        finally:
            # A cut leaves the body suspended at a yield (holding, say, an open file):
            # close it now rather than whenever the garbage collector gets to it.
            close = getattr(pieces, "aclose", None)
            if close is not None:
                with contextlib.suppress(RuntimeError):  # still running in aiohttp's writer
                    await close()

    async def _send(
        self, blob: bytes, ut: bytes, offset: int, size: int, stream: AsyncIterator[bytes]
    ) -> bool:
        headers = {
            TOKEN_HEADER: ut.hex(),
            "Upload-Offset": str(offset),
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size - offset),
        }
        async with self._session.put(
            f"{self._base}/v1/blob/{blob.hex()}",
            data=stream,
            headers=headers,
            timeout=self._timeout,
        ) as resp:
            reply = await self._frame(resp, cut_is_error=True)
        if not isinstance(reply, BlobOffset):
            raise TransportError("the relay sent an unexpected reply")
        return bool(reply.done)

    # --- download -------------------------------------------------------------------------

    async def download(
        self,
        blob: bytes,
        rt: bytes,
        size: int,
        sink: BlobSink,
        *,
        resumable: bool = True,
        progress: Progress | None = None,
    ) -> None:
        """Stream the blob (``size`` bytes of ciphertext) into ``sink``, each byte once, in
        order; after a cut go on from the byte received last (``Range``) unless
        ``resumable`` is False (a blob with a download limit: the cut is final).

        Raises:
            RelayRejected: ``AUTH`` (unknown, expired, exhausted or incomplete blob, or wrong
                token: the relay does not say which).
            TransportError: cut and not resumable, cut too often, or the relay sent more or
                fewer bytes than ``size``.
        """
        _check(blob, BLOB_ID_SIZE, "blob")
        _check(rt, TOKEN_SIZE, "rt")
        got, failures, delay = 0, 0, 0.1
        while True:
            before = got
            cut: BaseException
            try:
                got = await self._get(blob, rt, got, size, sink, progress)
            except _Cut as exc:
                got, cut = max(before, exc.got), exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                cut = exc
            else:
                if got == size:
                    return
                cut = _Cut(got)
            if not resumable:
                raise TransportError("the download was cut (it cannot resume)") from cut
            failures = 0 if got > before else failures + 1
            if failures > self._retries:
                raise TransportError("the download was cut too often") from cut
            log.debug("download cut; resuming")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _get(
        self,
        blob: bytes,
        rt: bytes,
        start: int,
        size: int,
        sink: BlobSink,
        progress: Progress | None,
    ) -> int:
        headers = {TOKEN_HEADER: rt.hex()}
        if start:
            headers["Range"] = f"bytes={start}-"
        got = start
        async with self._session.get(
            f"{self._base}/v1/blob/{blob.hex()}", headers=headers, timeout=self._timeout
        ) as resp:
            if resp.status not in (200, 206):
                await self._frame(resp)  # raises RelayRejected for an err frame
                raise TransportError(f"the relay answered HTTP {resp.status}")
            if start and resp.status != 206:
                raise TransportError("the relay ignored the range")
            try:
                while True:
                    piece = await resp.content.read(_READ)
                    if not piece:
                        break
                    if got + len(piece) > size:
                        raise TransportError("the relay sent more than the blob")
                    await sink(piece)
                    got += len(piece)
                    if progress is not None:
                        progress(got, size)
            except (aiohttp.ClientError, TimeoutError):
                if got > start:
                    raise _Cut(got) from None
                raise
        return got

    # --- replies --------------------------------------------------------------------------

    @staticmethod
    async def _frame(resp: aiohttp.ClientResponse, *, cut_is_error: bool = False) -> object:
        """Decode the reply frame of a blob request; ``err`` frames raise."""
        try:
            data = await resp.content.read(MAX_RELAY_FRAME_SIZE + 1)
        except (aiohttp.ClientError, TimeoutError):
            if cut_is_error:
                raise _Cut() from None
            raise
        try:
            _, reply = decode_relay_frame(data)
        except WireError:
            raise TransportError(f"the relay answered HTTP {resp.status}") from None
        if isinstance(reply, ErrorReply):
            raise RelayRejected(reply.code)
        if resp.status != 200:
            raise TransportError(f"the relay answered HTTP {resp.status}")
        return reply


class _Cut(Exception):
    """A streamed request ended early (``got``: bytes received so far, downloads)."""

    def __init__(self, got: int = 0) -> None:
        super().__init__("cut")
        self.got = got
