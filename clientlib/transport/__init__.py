"""Relay transports: how clientlib talks to a blindrelay relay (protocol.md Part I).

- :class:`WebSocketTransport` -- one socket with request/response by id, pushed envelopes as
  :meth:`~WebSocketTransport.events`, and automatic reconnect (jittered exponential backoff)
  with resubscription, so unacknowledged envelopes are delivered again after a drop.
- :class:`HTTPTransport` -- stateless fallback: create, deposit, fetch (poll + ack), delete,
  prekey upload and bundle fetch, the consent operations of protocol.md §4.8-§4.10
  (send capabilities, boundaries, proof-of-work nonces, bans, mailbox info) and abuse
  reports (§4.11: ``report``, ``report_status``); both transports have all of these except
  subscribe (WebSocket) and fetch (HTTP).
- :class:`~clientlib.transport.api.RelayAPI` -- the operations both share, written once
  (signatures, docstrings, field and reply checks) over two primitives each transport
  implements: a plain request and an owner request. Type against it when any transport will do.
- :mod:`clientlib.transport.memory` (imported on its own, for tests and embedding) --
  :class:`~clientlib.transport.memory.MemoryLink` serves an aiohttp application such as the
  relay's in this process and connects both transports to it through in-memory pipes.

This layer imports only aiohttp, the standard library, :mod:`clientlib.wire` and
:mod:`clientlib.errors`. It holds no secret keys: owner commands are signed through a
``sign(cmd) -> signature`` callback (:class:`MailboxCredential`), for example
``lambda cmd: sk.sign(OWNER_COMMAND_CONTEXT + cmd).signature``.

Spreading mailboxes over connections: the relay learns which mailboxes one socket serves.
To keep mailboxes unlinkable, open one :class:`WebSocketTransport` per mailbox (ideally each
with its own ``aiohttp.ClientSession``); :func:`spread` opens such a set.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from clientlib.transport.api import RelayAPI
from clientlib.transport.base import (
    CaughtUp,
    Delivered,
    Disconnected,
    MailboxCredential,
    Reconnected,
    SignFn,
    SubscriptionLost,
    TransportEvent,
)
from clientlib.transport.http import CONTENT_TYPE, HTTPTransport
from clientlib.transport.websocket import WebSocketTransport

__all__ = [
    "CONTENT_TYPE",
    "CaughtUp",
    "Delivered",
    "Disconnected",
    "HTTPTransport",
    "MailboxCredential",
    "Reconnected",
    "RelayAPI",
    "SignFn",
    "SubscriptionLost",
    "TransportEvent",
    "WebSocketTransport",
    "spread",
]


@contextlib.asynccontextmanager
async def spread(
    creds: Sequence[MailboxCredential],
    factory: Callable[[], WebSocketTransport],
) -> AsyncIterator[list[tuple[MailboxCredential, WebSocketTransport]]]:
    """Open one transport per mailbox and subscribe each to its own mailbox.

    Args:
        creds: the mailboxes to receive on.
        factory: builds a fresh, unopened transport (e.g. bound to its own session).

    Yields:
        ``(credential, transport)`` pairs; every transport is closed on exit.

    Raises:
        RelayRejected: a subscription was refused.
        TransportError: a relay could not be reached.
    """
    async with contextlib.AsyncExitStack() as stack:
        pairs: list[tuple[MailboxCredential, WebSocketTransport]] = []
        for cred in creds:
            transport = await stack.enter_async_context(factory())
            await transport.subscribe(cred)
            pairs.append((cred, transport))
        yield pairs
