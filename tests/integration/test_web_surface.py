"""The public listener's web surface over real HTTP and raw sockets: CORS for browser apps,
the WebSocket ``Origin`` policy, ``err`` frames for every answer that is not a protocol
reply (404, 405, aiohttp's own 400s), and a ``Server`` header that names no versions.

The browser half (a page of another origin depositing, fetching a bundle and receiving a
push) is ``tests/browser/test_browser_app.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from relaydriver import CT, HTTPClient, Owner, WSClient
from yarl import URL

from clientlib.wire import Deposit, ErrorReply, decode_relay_frame
from relay.config import ConfigError, RelayConfig, load_config
from relay.webguard import SERVER_HEADER

Start = Callable[[RelayConfig], Awaitable[tuple[str, object]]]
APP = "http://app.example:8080"
POST_ROUTES = ("challenge", "owner", "deposit", "bundle", "mkeys", "boundaries", "pow")


@pytest.fixture
def config(tmp_path: Path) -> RelayConfig:
    return RelayConfig(storage="sqlite", data_dir=str(tmp_path / "data"), purge_interval_s=3600)


@pytest.fixture
async def relay(make_relay: Start, config: RelayConfig) -> str:
    url, _ = await make_relay(config)
    return url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _err(body: bytes) -> str:
    _, frame = decode_relay_frame(body)
    assert isinstance(frame, ErrorReply)
    return frame.code


async def test_preflight_is_answered_for_every_api_route(
    relay: str, http: aiohttp.ClientSession
) -> None:
    for route in POST_ROUTES:
        async with http.options(
            relay + f"v1/{route}",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        ) as r:
            assert r.status == 204, route
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            methods = set(r.headers["Access-Control-Allow-Methods"].split(", "))
            assert methods == {"GET", "POST", "PUT"}  # PUT: blob uploads (protocol.md §5.9)
            assert r.headers["Access-Control-Allow-Headers"].lower() == (
                "content-type, blindrelay-token, upload-offset, range"
            )
            assert r.headers["Access-Control-Max-Age"] == "7200"
            assert "Access-Control-Allow-Credentials" not in r.headers
    # GET /v1/info too; a method the path does not take and an unknown path: no preflight.
    async with http.options(
        relay + "v1/info", headers={"Origin": APP, "Access-Control-Request-Method": "GET"}
    ) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    async with http.options(
        relay + "v1/deposit", headers={"Origin": APP, "Access-Control-Request-Method": "PUT"}
    ) as r:
        assert r.status == 405 and _err(await r.read()) == "MALFORMED"
    async with http.options(
        relay + "v1/nowhere", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    ) as r:
        assert r.status == 404 and _err(await r.read()) == "MALFORMED"


async def test_cross_origin_replies_carry_cors_headers_errors_included(
    relay: str, http: aiohttp.ClientSession, owner: Owner
) -> None:
    api = HTTPClient(http, relay)
    _, sid = await api.create_mailbox(owner)
    body = Deposit(id=7, sid=sid, eid=os.urandom(16), flags=0, ct=bytes(256)).encode()
    async with http.post(
        relay + "v1/deposit", data=body, headers={"Content-Type": CT, "Origin": APP}
    ) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in r.headers
    async with http.post(
        relay + "v1/deposit", data=b"\x01junk", headers={"Content-Type": CT, "Origin": APP}
    ) as r:
        assert r.status == 400 and _err(await r.read()) == "MALFORMED"
        assert r.headers["Access-Control-Allow-Origin"] == "*"  # the app can read the code
    async with http.get(relay + "v1/info") as r:  # no Origin: no CORS headers
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers


async def test_allowed_origins_narrows_cors_and_the_websocket(
    make_relay: Start, config: RelayConfig, http: aiohttp.ClientSession, owner: Owner
) -> None:
    relay, _ = await make_relay(replace(config, allowed_origins=f"{APP}, https://b.example"))
    pre = {"Access-Control-Request-Method": "POST"}
    async with http.options(relay + "v1/deposit", headers={**pre, "Origin": APP}) as r:
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert "Origin" in r.headers.getall("Vary")
    async with http.options(relay + "v1/deposit", headers={**pre, "Origin": "http://evil"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers  # the browser refuses
    async with http.get(relay + "v1/info", headers={"Origin": "http://evil"}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    # The WebSocket: a refused origin gets 403 and an err frame before the upgrade ...
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(relay + "v1/ws", headers={"Origin": "http://evil"})
    assert info.value.status == 403
    async with http.get(
        relay + "v1/ws",
        headers={
            "Origin": "http://evil",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as r:
        assert r.status == 403 and _err(await r.read()) == "AUTH"
    # ... an allowed origin and a client that sends none (not a browser) are served.
    for headers in ({"Origin": APP}, {}):
        async with WSClient(http, relay, headers) as ws:
            rid, _ = await ws.create_mailbox(owner)
            await ws.subscribe(owner, rid)
    # No origins at all: no CORS, and no browser may open the socket.
    closed, _ = await make_relay(
        replace(config, allowed_origins="", data_dir=config.data_dir + "-closed")
    )
    async with http.options(closed + "v1/deposit", headers={**pre, "Origin": APP}) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(closed + "v1/ws", headers={"Origin": APP})


async def test_any_origin_may_open_the_websocket_by_default(
    relay: str, http: aiohttp.ClientSession, owner: Owner
) -> None:
    async with WSClient(http, relay, {"Origin": "http://anything.example:1234"}) as ws:
        rid, _ = await ws.create_mailbox(owner)
        await ws.subscribe(owner, rid)


async def test_non_protocol_answers_are_err_frames(relay: str, http: aiohttp.ClientSession) -> None:
    probe = "<script>x</script>"
    for method, path, status in (
        ("GET", f"v2/{probe}", 404),
        ("GET", "v1/deposit", 405),
        ("PUT", f"v1/owner?{probe}", 405),
        ("DELETE", "v1/info", 405),
        ("GET", "v1/ws", 400),  # not an upgrade: aiohttp's own refusal
    ):
        async with http.request(method, relay + path) as r:
            body = await r.read()
            assert r.status == status, (method, path)
            assert r.content_type == CT and _err(body) == "MALFORMED"
            assert b"script" not in body and r.headers["Server"] == SERVER_HEADER
            if status == 405:
                assert "POST" in r.headers["Allow"] or "GET" in r.headers["Allow"]


async def test_unparsable_requests_get_err_frames_that_echo_nothing(relay: str) -> None:
    url = URL(relay)
    assert url.host is not None and url.port is not None
    marker = b"ECHO-ME-\xff"
    for raw in (
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nBad: " + marker + b"\x01\r\n\r\n",
        b"G\x00T /v1/" + marker + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + marker + b"\r\n\r\n",
        b"POST /v1/deposit HTTP/1.1\r\nHost: x\r\nContent-Length: zz" + marker + b"\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(raw)
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        assert 400 <= status < 500, lines[0]
        assert headers["content-type"] == CT, raw[:40]
        assert headers["server"] == SERVER_HEADER
        assert _err(body) in ("MALFORMED", "TOO_LARGE")
        assert b"ECHO" not in reply and b"aaaa" not in reply


async def test_server_header_names_no_versions(relay: str, http: aiohttp.ClientSession) -> None:
    for path in ("v1/info", "healthz", "readyz", "metrics"):
        async with http.get(relay + path) as r:
            assert r.status == 200 and r.headers["Server"] == SERVER_HEADER, path
            assert "Python" not in r.headers["Server"] and "aiohttp" not in r.headers["Server"]


@pytest.mark.parametrize(
    "value",
    ["*, http://a.example", "ftp://a.example", "http://a.example/path", "a.example", "http://"],
)
def test_allowed_origins_is_validated(value: str) -> None:
    with pytest.raises(ConfigError, match="allowed_origins"):
        load_config(environ={"BLINDRELAY_ALLOWED_ORIGINS": value})


def test_allowed_origins_defaults_to_any() -> None:
    config = load_config(environ={})
    assert config.allowed_origins == "*" and config.origin_allowed("http://x.example")
    narrow = load_config(environ={"BLINDRELAY_ALLOWED_ORIGINS": "https://App.example:8443"})
    assert narrow.origin_allowed("https://app.example:8443")
    assert not narrow.origin_allowed("https://app.example")
