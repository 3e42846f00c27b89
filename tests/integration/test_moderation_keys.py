"""The relay publishes its moderator keys (``mkeys?``, protocol.md §4.11, §15.5.3)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from clientlib.transport import HTTPTransport, WebSocketTransport
from clientlib.transport.memory import MemoryLink
from relay.amf import judge_key
from relay.app import create_app
from relay.appkeys import service_key
from relay.config import RelayConfig


@pytest.fixture
async def link(relay_config: RelayConfig) -> AsyncIterator[tuple[MemoryLink, web.Application]]:
    app = create_app(relay_config)
    async with MemoryLink(app) as running:
        yield running, app


async def test_moderation_keys_over_both_transports_match_the_franking_key(
    link: tuple[MemoryLink, web.Application],
) -> None:
    running, app = link
    relay, session = running.url, running.default_session
    async with WebSocketTransport(session, relay) as ws:
        over_ws = await ws.moderation_keys()
    over_http = await HTTPTransport(session, relay).moderation_keys()
    assert over_ws == over_http and len(over_ws) >= 1
    kid, m = over_ws[0]
    keys = await app[service_key].store.franking_keys()
    (key,) = [k for k in keys if k.kid == kid]
    assert judge_key(key.secret).public == m
    assert len({k for k, _ in over_ws}) == len(over_ws)
