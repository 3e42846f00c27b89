"""HTTP routes of attachment blobs (protocol.md §5.9, revision 8).

- ``POST /v1/blob``: a ``blob+`` frame; answers ``blob``;
- ``PUT /v1/blob/<id>``: ciphertext bytes, headers ``Blindrelay-Token: <ut>`` and
  ``Upload-Offset: <n>``; answers ``boff`` once they are durable;
- ``GET /v1/blob/<id>/upload``: header ``Blindrelay-Token: <ut>``; answers ``boff`` (where to
  resume);
- ``GET /v1/blob/<id>``: header ``Blindrelay-Token: <rt>``, optional ``Range: bytes=a-``;
  answers 200 or 206 with the bytes.

Errors are ``err`` frames like every other route's. Ids and tokens are lowercase hex; tokens
travel in a header, never in the path. An id that is not 32 lowercase hex digits, a token
that is not 64, a missing or non-decimal ``Upload-Offset`` and any ``Range`` other than
``bytes=a-`` are ``MALFORMED``; a missing token is ``AUTH`` (like a wrong one).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from clientlib.wire.client_frames import CreateBlob
from clientlib.wire.codes import ErrorCode
from relay.appkeys import config_key, service_key
from relay.errors import RelayError, wire_code
from relay.http.routes import frame_response, read_frame

__all__ = ["TOKEN_HEADER", "setup_blob_routes"]

TOKEN_HEADER: Final = "Blindrelay-Token"  # noqa: S105 - a header name
OFFSET_HEADER: Final = "Upload-Offset"
_ID: Final = re.compile(r"[0-9a-f]{32}")
_TOKEN: Final = re.compile(r"[0-9a-f]{64}")
_DECIMAL: Final = re.compile(r"[0-9]{1,16}")
_RANGE: Final = re.compile(r"bytes=([0-9]{1,16})-")
_INDEX: Final = re.compile(r"[0-9]|1[0-5]")  # an attachment of a report: 0..15
#: What one read of an upload body takes from the socket buffer at most.
_READ_CHUNK: Final = 256 << 10


def _blob_id(request: web.Request) -> bytes:
    value = request.match_info["id"]
    if not _ID.fullmatch(value):
        raise RelayError(ErrorCode.MALFORMED)
    return bytes.fromhex(value)


def _token(request: web.Request) -> bytes:
    value = request.headers.get(TOKEN_HEADER)
    if value is None:
        raise RelayError(ErrorCode.AUTH)
    if not _TOKEN.fullmatch(value):
        raise RelayError(ErrorCode.MALFORMED)
    return bytes.fromhex(value)


async def create_blob(request: web.Request) -> web.Response:
    """``POST /v1/blob``: start an upload for a destination mailbox."""
    version, frame = await read_frame(request)
    if not isinstance(frame, CreateBlob):
        raise RelayError(ErrorCode.MALFORMED)
    reply = await request.app[service_key].blobs.create(frame)
    return frame_response(reply.encode(version))


async def _body(request: web.Request, stall_s: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; a read that waits ``stall_s`` is ``TIMEOUT``."""
    while True:
        try:
            async with asyncio.timeout(stall_s):
                chunk = await request.content.readany()
        except TimeoutError:
            raise RelayError(ErrorCode.TIMEOUT) from None
        if not chunk:
            return
        for i in range(0, len(chunk), _READ_CHUNK):
            yield chunk[i : i + _READ_CHUNK]


async def put_blob(request: web.Request) -> web.Response:
    """``PUT /v1/blob/<id>``: append bytes at ``Upload-Offset``; ``boff`` once durable."""
    blob_id, ut = _blob_id(request), _token(request)
    raw = request.headers.get(OFFSET_HEADER, "")
    if not _DECIMAL.fullmatch(raw):
        raise RelayError(ErrorCode.MALFORMED)
    stall = request.app[config_key].body_read_timeout_s
    reply = await request.app[service_key].blobs.upload(
        blob_id, ut, int(raw), _body(request, stall), request.content_length
    )
    return frame_response(reply.encode())


async def upload_state(request: web.Request) -> web.Response:
    """``GET /v1/blob/<id>/upload``: how many bytes are durably stored (where to resume)."""
    blob_id, ut = _blob_id(request), _token(request)
    reply = await request.app[service_key].blobs.upload_state(blob_id, ut)
    return frame_response(reply.encode())


async def get_blob(request: web.Request) -> web.StreamResponse:
    """``GET /v1/blob/<id>``: the ciphertext (200), or from byte ``a`` (206), streamed."""
    blob_id, rt = _blob_id(request), _token(request)
    start, ranged = 0, False
    header = request.headers.get("Range")
    if header is not None:
        match = _RANGE.fullmatch(header.strip())
        if match is None:
            raise RelayError(ErrorCode.MALFORMED)
        start, ranged = int(match.group(1)), True
    download = await request.app[service_key].blobs.download(blob_id, rt, start)
    try:
        response = web.StreamResponse(status=206 if ranged else 200)
        response.content_type = "application/octet-stream"
        response.content_length = download.size - start
        response.headers["Cache-Control"] = "no-store"
        response.headers["Accept-Ranges"] = "bytes"
        if ranged:
            response.headers["Content-Range"] = f"bytes {start}-{download.size - 1}/{download.size}"
        await response.prepare(request)
        try:
            async for chunk in download.chunks():
                await response.write(chunk)
            await response.write_eof()
        except Exception as exc:
            # The client went away, or storage failed, mid-stream: the status is sent, so
            # there is nothing to answer (the client sees a short body). A bug is raised.
            if not isinstance(exc, ConnectionError) and wire_code(exc) is None:
                raise
        return response
    finally:
        await download.aclose()


async def reveal_attachment(request: web.Request) -> web.Response:
    """``PUT /v1/report/<report>/<i>``: the plaintext of attachment ``i`` of a report filed
    by hash (protocol.md §5.9, "Reports"); kept only if it is the committed one."""
    report, index = request.match_info["report"], request.match_info["index"]
    if not _ID.fullmatch(report) or not _INDEX.fullmatch(index):
        raise RelayError(ErrorCode.MALFORMED)
    stall = request.app[config_key].body_read_timeout_s
    reply = await request.app[service_key].blobs.reveal(
        bytes.fromhex(report), int(index), _body(request, stall), request.content_length
    )
    return frame_response(reply.encode())


def setup_blob_routes(app: web.Application) -> None:
    app.router.add_post("/v1/blob", create_blob, name="blob_create")
    app.router.add_put("/v1/blob/{id}", put_blob, name="blob_put")
    # No HEAD: a HEAD would count (and, for a view-once blob, spend) a download.
    app.router.add_get("/v1/blob/{id}/upload", upload_state, name="blob_state", allow_head=False)
    app.router.add_get("/v1/blob/{id}", get_blob, name="blob_get", allow_head=False)
    app.router.add_put("/v1/report/{report}/{index}", reveal_attachment, name="report_reveal")
