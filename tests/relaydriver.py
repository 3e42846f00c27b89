"""A small, honest relay client for tests and benchmarks: real WebSocket and HTTP, real
Ed25519 signatures (PyNaCl), frames from :mod:`clientlib.wire`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from typing import Any

import aiohttp
import nacl.signing

from clientlib.wire import (
    OWNER_COMMAND_CONTEXT,
    Ack,
    ChallengeIssued,
    Deposit,
    Drained,
    EnvelopeDelivered,
    EnvelopesFetched,
    ErrorReply,
    Hello,
    MailboxCreated,
    Ok,
    OwnerCommand,
    RelayFrame,
    RequestChallenge,
    SignedOwnerCommand,
    Unsubscribe,
    decode_relay_frame,
)

CT = "application/x-blindrelay"

#: Every mailbox id and owner key this driver created or used: tests search logs and
#: storage for them.
SEEN: set[bytes] = set()


def remember(*values: bytes) -> None:
    SEEN.update(values)


class Owner:
    """An owner key pair."""

    def __init__(self) -> None:
        self.sk = nacl.signing.SigningKey.generate()
        self.pk = bytes(self.sk.verify_key)
        remember(self.pk)

    def sign(self, cmd: bytes) -> bytes:
        return self.sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature

    def command(self, request_id: int, **fields: Any) -> SignedOwnerCommand:
        cmd = OwnerCommand(**fields).encode()
        return SignedOwnerCommand(id=request_id, cmd=cmd, sig=self.sign(cmd))


class RelayRejectedError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class WSClient:
    """One WebSocket connection to a relay."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.session = session
        self.url = base_url.rstrip("/") + "/v1/ws"
        self.headers = headers or {}
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[RelayFrame]] = {}
        self.pushes: asyncio.Queue[RelayFrame] = asyncio.Queue()
        self.errors_without_id: list[ErrorReply] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.hello: Hello | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WSClient:
        self.ws = await self.session.ws_connect(
            self.url, max_msg_size=4 << 20, headers=self.headers
        )
        msg = await self.ws.receive()
        _, hello = decode_relay_frame(msg.data)
        assert isinstance(hello, Hello)
        self.hello = hello
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            _, frame = decode_relay_frame(msg.data)
            rid = getattr(frame, "id", None)
            if isinstance(frame, EnvelopeDelivered | Drained):
                self.pushes.put_nowait(frame)
            elif rid is not None and rid in self.pending:
                self.pending.pop(rid).set_result(frame)
            elif isinstance(frame, ErrorReply):
                self.errors_without_id.append(frame)
                self.pushes.put_nowait(frame)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def request(self, frame: Any, *, check: bool = True) -> RelayFrame:
        fut: asyncio.Future[RelayFrame] = asyncio.get_running_loop().create_future()
        self.pending[frame.id] = fut
        await self.send_raw(frame.encode())
        reply = await asyncio.wait_for(fut, 30)
        if check and isinstance(reply, ErrorReply):
            raise RelayRejectedError(reply.code)
        return reply

    async def challenge(self, op: str, rid: bytes | None = None) -> bytes:
        reply = await self.request(RequestChallenge(id=next(self.ids), op=op, rid=rid))
        assert isinstance(reply, ChallengeIssued)
        return reply.nonce

    async def create_mailbox(self, owner: Owner) -> tuple[bytes, bytes]:
        nonce = await self.challenge("create")
        reply = await self.request(
            owner.command(next(self.ids), op="create", nonce=nonce, key=owner.pk)
        )
        assert isinstance(reply, MailboxCreated)
        remember(reply.rid, reply.sid)
        return reply.rid, reply.sid

    async def owner_op(self, owner: Owner, op: str, rid: bytes) -> RelayFrame:
        nonce = await self.challenge(op, rid)
        return await self.request(owner.command(next(self.ids), op=op, nonce=nonce, rid=rid))

    async def subscribe(self, owner: Owner, rid: bytes) -> None:
        reply = await self.owner_op(owner, "sub", rid)
        assert isinstance(reply, Ok)

    async def delete(self, owner: Owner, rid: bytes) -> None:
        reply = await self.owner_op(owner, "delete", rid)
        assert isinstance(reply, Ok)

    async def deposit(
        self,
        sid: bytes,
        ct: bytes,
        *,
        eid: bytes | None = None,
        flags: int = 0,
        fc: bytes | None = None,
        check: bool = True,
    ) -> RelayFrame:
        frame = Deposit(
            id=next(self.ids), sid=sid, eid=eid or os.urandom(16), flags=flags, ct=ct, fc=fc
        )
        return await self.request(frame, check=check)

    async def ack(self, rid: bytes, seqs: list[int]) -> RelayFrame:
        return await self.request(Ack(id=next(self.ids), rid=rid, seqs=tuple(seqs)))

    async def unsubscribe(self, rid: bytes) -> RelayFrame:
        return await self.request(Unsubscribe(id=next(self.ids), rid=rid))

    async def next_push(self, timeout: float = 10) -> RelayFrame:
        return await asyncio.wait_for(self.pushes.get(), timeout)


class HTTPClient:
    """The HTTP API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.ids = itertools.count(1)

    async def post(self, path: str, body: bytes) -> tuple[int, RelayFrame]:
        async with self.session.post(
            self.base + path, data=body, headers={"Content-Type": CT}
        ) as resp:
            data = await resp.read()
            _, frame = decode_relay_frame(data)
            return resp.status, frame

    async def call(self, path: str, frame: Any) -> RelayFrame:
        status, reply = await self.post(path, frame.encode())
        if isinstance(reply, ErrorReply):
            raise RelayRejectedError(reply.code)
        assert status == 200
        return reply

    async def challenge(self, op: str, rid: bytes | None = None) -> bytes:
        reply = await self.call(
            "/v1/challenge", RequestChallenge(id=next(self.ids), op=op, rid=rid)
        )
        assert isinstance(reply, ChallengeIssued)
        return reply.nonce

    async def create_mailbox(self, owner: Owner) -> tuple[bytes, bytes]:
        nonce = await self.challenge("create")
        reply = await self.call(
            "/v1/owner", owner.command(next(self.ids), op="create", nonce=nonce, key=owner.pk)
        )
        assert isinstance(reply, MailboxCreated)
        remember(reply.rid, reply.sid)
        return reply.rid, reply.sid

    async def fetch(
        self, owner: Owner, rid: bytes, *, ack: list[int] | None = None, max: int | None = None
    ) -> EnvelopesFetched:
        nonce = await self.challenge("fetch", rid)
        reply = await self.call(
            "/v1/owner",
            owner.command(
                next(self.ids),
                op="fetch",
                nonce=nonce,
                rid=rid,
                ack=tuple(ack) if ack is not None else None,
                max=max,
            ),
        )
        assert isinstance(reply, EnvelopesFetched)
        return reply

    async def delete(self, owner: Owner, rid: bytes) -> None:
        nonce = await self.challenge("delete", rid)
        reply = await self.call(
            "/v1/owner", owner.command(next(self.ids), op="delete", nonce=nonce, rid=rid)
        )
        assert isinstance(reply, Ok)

    async def deposit(
        self, sid: bytes, ct: bytes, *, eid: bytes | None = None, flags: int = 0
    ) -> RelayFrame:
        return await self.call(
            "/v1/deposit",
            Deposit(id=next(self.ids), sid=sid, eid=eid or os.urandom(16), flags=flags, ct=ct),
        )
