"""Issue 19, findings 7, 9 and 11 on a live relay: a client that hangs up mid-body, the
``id`` of an HTTP ``err``, and the caching and ``Server`` headers of HTTP replies."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any

import aiohttp
import pytest
from faultkit import CT, bucket, metric, new_mailbox
from liverelay import RelayProcess
from relaydriver import HTTPClient, Owner

from clientlib.wire import (
    ChallengeIssued,
    Deposit,
    ErrorReply,
    FetchBundle,
    RequestChallenge,
    decode_relay_frame,
)

BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def live(request: pytest.FixtureRequest, relay_factory: Any) -> RelayProcess:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        return relay_factory(storage="redis", redis_url=url)  # type: ignore[no-any-return]
    return relay_factory()  # type: ignore[no-any-return]


def _half_request(relay: RelayProcess, body: bytes, *, reset: bool) -> None:
    """POST /v1/deposit announcing a whole frame, send half of it, then hang up: FIN, or RST
    (``SO_LINGER`` 0) if ``reset``."""
    head = (
        f"POST /v1/deposit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {CT}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
        sock.sendall(head + body[: len(body) // 2])
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_client_hanging_up_mid_body_is_not_a_relay_error(live: RelayProcess) -> None:
    """Finding 7: closing half-way through a deposit's body (FIN or RST) is counted as
    ``peer_gone``, logged at debug at most; never ``request_failed`` at error level with a
    traceback (the conftest checks the whole log), never an INTERNAL answer or metric."""
    frame = Deposit(id=1, sid=os.urandom(16), eid=os.urandom(16), flags=0, ct=bucket(4096))
    for i in range(6):
        await asyncio.to_thread(_half_request, live, frame.encode(), reset=bool(i % 2))
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            if await metric(session, live, "blindrelay_peer_gone_total") >= 6:
                break
            await asyncio.sleep(0.1)
        assert await metric(session, live, "blindrelay_peer_gone_total") == 6
        assert await metric(session, live, "blindrelay_errors_total", 'kind="INTERNAL"') == 0
        # The relay still serves.
        http = HTTPClient(session, live.url)
        owner = Owner()
        _, sid = await new_mailbox(http, owner)
        await http.deposit(sid, bucket())
    assert '"request_failed"' not in live.log_text()


async def test_http_err_echoes_the_request_id(live: RelayProcess) -> None:
    """Finding 9 (protocol.md §3.2, revision 13): over HTTP too, ``err`` carries the
    request's ``id`` whenever it can be read: an owner command that fails authentication
    (a decodable, signed frame), a deposit to an unknown send id, and a frame of an unknown
    field; not for bytes that are no frame."""
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, live.url)
        rid, _ = await new_mailbox(http, owner)
        unknown_nonce = os.urandom(32)
        signed = owner.command(4242, op="fetch", nonce=unknown_nonce, rid=rid)
        status, reply = await http.post("/v1/owner", signed.encode())
        assert status == 403
        assert isinstance(reply, ErrorReply) and reply.code == "AUTH" and reply.id == 4242
        # Signed by someone else, with a real challenge: AUTH, id echoed.
        nonce = await http.challenge("fetch", rid)
        forged = Owner().command(77, op="fetch", nonce=nonce, rid=rid)
        status, reply = await http.post("/v1/owner", forged.encode())
        assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("AUTH", 77)
        dep = Deposit(id=9, sid=os.urandom(16), eid=os.urandom(16), flags=0, ct=bucket())
        status, reply = await http.post("/v1/deposit", dep.encode())
        assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("AUTH", 9)
        # A map with an unknown field: MALFORMED, but the id can be read.
        import msgpack

        odd = b"\x01" + msgpack.packb({"t": "chal", "id": 55, "op": "create", "zz": 1})
        status, reply = await http.post("/v1/challenge", odd)
        assert isinstance(reply, ErrorReply) and (reply.code, reply.id) == ("MALFORMED", 55)
        status, reply = await http.post("/v1/challenge", b"\x01\xc1")
        assert isinstance(reply, ErrorReply) and reply.code == "MALFORMED" and reply.id is None


async def test_replies_are_not_cached_and_name_no_versions(live: RelayProcess) -> None:
    """Finding 11: every reply that carries envelopes, keys or account data (``envs``,
    ``info``, ``bundle``, a challenge), and errors too, says ``Cache-Control: no-store``;
    the ``Server`` header is the fixed product name."""
    owner = Owner()
    async with aiohttp.ClientSession() as session:
        http = HTTPClient(session, live.url)
        rid, sid = await new_mailbox(http, owner)
        await http.deposit(sid, bucket())

        async def headers(path: str, body: bytes) -> tuple[Any, bytes]:
            async with session.post(
                live.url.rstrip("/") + path, data=body, headers={"Content-Type": CT}
            ) as resp:
                return resp.headers, await resp.read()

        replies = []
        nonce_reply = await headers(
            "/v1/challenge", RequestChallenge(id=1, op="fetch", rid=rid).encode()
        )
        replies.append(nonce_reply)
        _, chal = decode_relay_frame(nonce_reply[1])
        assert isinstance(chal, ChallengeIssued)
        replies.append(
            await headers(
                "/v1/owner", owner.command(2, op="fetch", nonce=chal.nonce, rid=rid).encode()
            )
        )
        nonce = await http.challenge("info", rid)
        replies.append(
            await headers("/v1/owner", owner.command(3, op="info", nonce=nonce, rid=rid).encode())
        )
        replies.append(await headers("/v1/bundle", FetchBundle(id=4, sid=sid).encode()))
        for hdrs, _ in replies:
            assert hdrs["Cache-Control"] == "no-store"
            assert hdrs["Server"] == "blindrelay"
        async with session.get(live.url + "v1/info") as resp:
            assert resp.headers["Server"] == "blindrelay"
            assert resp.headers["Cache-Control"] == "no-store"
