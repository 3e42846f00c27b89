"""In-process relay fixtures: the real app on a real loopback socket, both backends.

Every id and key the tests learn is remembered, and at the end of the session the relay's
whole log output is searched for them (and for IP addresses): none may appear.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import relaydriver
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import RelayConfig
from relay.logging import configure_logging

LOG = io.StringIO()


@pytest.fixture(scope="session", autouse=True)
def relay_log() -> Iterator[io.StringIO]:
    configure_logging("debug", "json", stream=LOG)
    yield LOG
    text = LOG.getvalue()
    assert "request_handled" in text  # the relay did log
    assert not re.search(r"\b127\.0\.0\.1\b|::1\b|\blocalhost\b", text), "address in logs"
    for value in relaydriver.SEEN:
        for form in (value.hex(), value.hex().upper(), repr(value)[2:-1]):
            assert form not in text, "an id or key reached the logs"
        import base64

        assert base64.b64encode(value).decode().rstrip("=") not in text


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def relay_config(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> RelayConfig:
    cfg = RelayConfig(storage=backend, data_dir=str(tmp_path), purge_interval_s=3600)
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        cfg = replace(cfg, redis_url=url)
    return cfg


@pytest.fixture
async def make_relay(tmp_path: Path) -> AsyncIterator[object]:
    servers: list[TestServer] = []

    async def start(config: RelayConfig) -> tuple[str, TestServer]:
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/")), server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def relay(make_relay, relay_config: RelayConfig) -> str:  # type: ignore[no-untyped-def]
    url, _ = await make_relay(relay_config)
    return url


@pytest.fixture
def owner() -> relaydriver.Owner:
    return relaydriver.Owner()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s
