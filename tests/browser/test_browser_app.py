"""A browser app on another origin uses the relay, in headless Chromium (issue 23, part 1).

The app's page is served by a second local server (``http://localhost:<port>``), the relay
by the real app on ``http://127.0.0.1:<port>``: every call is cross-origin, so Chromium
sends a CORS preflight for each ``POST`` with ``Content-Type: application/x-blindrelay``
and opens the WebSocket with ``Origin``. The page deposits to a mailbox, fetches a real
client's prekey bundle, subscribes over the WebSocket with a ``sub`` command signed in the
page by WebCrypto Ed25519 (the test checks the signature is the one PyNaCl computes), and
receives the push of its own deposit. Frames are encoded and decoded by the test with
``clientlib.wire``; the page moves bytes. With ``allowed_origins`` naming another origin,
the same page can do none of it.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from browserkit import Page, launch, require_chromium
from clientkit import make
from relaydriver import HTTPClient, Owner

from clientlib.wire import (
    OWNER_COMMAND_CONTEXT,
    BundleIssued,
    ChallengeIssued,
    Deposit,
    Drained,
    EnvelopeDelivered,
    Hello,
    Ok,
    OwnerCommand,
    RequestChallenge,
    SignedOwnerCommand,
    decode_relay_frame,
)
from clientlib.wire.frames import FetchBundle
from relay.admin.common import parse_suspend_target
from relay.app import create_app
from relay.config import RelayConfig

APP_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>app</title></head>
<body><script>
const hex = (buf) => Array.from(new Uint8Array(buf), b => b.toString(16).padStart(2, "0")).join("");
const unhex = (s) => new Uint8Array(s.match(/../g).map(h => parseInt(h, 16)));
window.post = async (url, body) => {
  const r = await fetch(url, {method: "POST", body: unhex(body),
                              headers: {"Content-Type": "application/x-blindrelay"}});
  return {status: r.status, body: hex(await r.arrayBuffer())};
};
window.inbox = [];
window.waiters = [];
window.wsOpen = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (m) => {
    const w = window.waiters.shift();
    if (w) w(hex(m.data)); else window.inbox.push(hex(m.data));
  };
  ws.onopen = () => { window.ws = ws; resolve(true); };
  ws.onerror = () => reject(new Error("websocket failed"));
});
window.wsSend = (body) => window.ws.send(unhex(body));
window.wsNext = () => window.inbox.length ? Promise.resolve(window.inbox.shift())
                     : new Promise((resolve) => window.waiters.push(resolve));
window.sign = async (jwk, data) => {
  const key = await crypto.subtle.importKey("jwk", jwk, {name: "Ed25519"}, false, ["sign"]);
  return hex(await crypto.subtle.sign({name: "Ed25519"}, key, unhex(data)));
};
</script></body></html>"""


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.fixture
async def app_origin() -> AsyncIterator[str]:
    """``http://localhost:<port>``: the browser app's own origin (not the relay's)."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=APP_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"http://localhost:{server.port}"
    finally:
        await server.close()


async def _relay(config: RelayConfig) -> TestServer:
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    return server


def _frame(hex_body: str) -> object:
    return decode_relay_frame(bytes.fromhex(hex_body))[1]


def _jwk(owner: Owner) -> dict[str, str]:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"kty": "OKP", "crv": "Ed25519", "d": b64(bytes(owner.sk)), "x": b64(owner.pk)}


async def test_a_page_of_another_origin_deposits_fetches_and_is_pushed(
    tmp_path: Path, chromium: str, app_origin: str
) -> None:
    config = RelayConfig(data_dir=str(tmp_path / "data"), purge_interval_s=3600)
    server = await _relay(config)
    relay = str(server.make_url("")).rstrip("/")
    try:
        owner = Owner()
        async with aiohttp.ClientSession() as http, make(tmp_path, "bob", relay + "/") as bob:
            rid, sid = await HTTPClient(http, relay).create_mailbox(owner)
            invitation = await bob.create_invitation()
            bob_sid = parse_suspend_target(invitation.link)
            async with launch(chromium) as browser:
                page = await browser.new_page()
                await page.goto(app_origin + "/")
                assert await page.evaluate("location.origin") == app_origin

                # The prekey bundle of a real client's contact address.
                got = await page.evaluate(
                    "([u, b]) => post(u, b)",
                    [relay + "/v1/bundle", FetchBundle(id=1, sid=bob_sid).encode().hex()],
                )
                assert got["status"] == 200
                bundle = _frame(got["body"])
                assert isinstance(bundle, BundleIssued) and len(bundle.static) > 0

                # Subscribe over the WebSocket, signing the sub command in the page.
                assert await page.evaluate(
                    "(u) => wsOpen(u)", relay.replace("http", "ws") + "/v1/ws"
                )
                assert isinstance(_frame(await page.evaluate("wsNext()")), Hello)
                await _ws_send(page, RequestChallenge(id=2, op="sub", rid=rid).encode())
                challenge = _frame(await page.evaluate("wsNext()"))
                assert isinstance(challenge, ChallengeIssued)
                cmd = OwnerCommand(op="sub", nonce=challenge.nonce, rid=rid).encode()
                signature, signer = await _sign_in_page(page, owner, OWNER_COMMAND_CONTEXT + cmd)
                assert signature == owner.sign(cmd)  # WebCrypto and PyNaCl agree
                if int(browser.version.split(".")[0]) >= 137:  # Ed25519 on by default since
                    assert signer == "webcrypto"
                await _ws_send(page, SignedOwnerCommand(id=3, cmd=cmd, sig=signature).encode())
                subscribed = [_frame(await page.evaluate("wsNext()")) for _ in range(2)]
                assert any(isinstance(f, Ok) and f.id == 3 for f in subscribed)
                assert any(isinstance(f, Drained) for f in subscribed)

                # Deposit from the page; the push arrives on the page's socket.
                ct, eid = os.urandom(256), os.urandom(16)
                deposit = Deposit(id=4, sid=sid, eid=eid, flags=0, ct=ct).encode().hex()
                got = await page.evaluate(
                    "([u, b]) => post(u, b)", [relay + "/v1/deposit", deposit]
                )
                assert got["status"] == 200 and isinstance(_frame(got["body"]), Ok)
                pushed = _frame(await page.evaluate("wsNext()"))
                assert isinstance(pushed, EnvelopeDelivered) and pushed.rid == rid
                assert pushed.env.ct == ct and pushed.env.eid == eid

                # An error reply is readable by the page too (CORS headers on errors).
                got = await page.evaluate("([u, b]) => post(u, b)", [relay + "/v1/deposit", "01c0"])
                assert got["status"] == 400 and _frame(got["body"]).code == "MALFORMED"  # type: ignore[attr-defined]
    finally:
        await server.close()


async def test_a_page_of_an_origin_not_allowed_can_do_nothing(
    tmp_path: Path, chromium: str, app_origin: str
) -> None:
    config = RelayConfig(
        data_dir=str(tmp_path / "data"),
        purge_interval_s=3600,
        allowed_origins="https://only-this.example",
    )
    server = await _relay(replace(config))
    relay = str(server.make_url("")).rstrip("/")
    try:
        owner = Owner()
        async with aiohttp.ClientSession() as http:
            rid, sid = await HTTPClient(http, relay).create_mailbox(owner)
            async with launch(chromium) as browser:
                page = await browser.new_page()
                await page.goto(app_origin + "/")
                deposit = Deposit(id=1, sid=sid, eid=os.urandom(16), flags=0, ct=bytes(256))
                with pytest.raises(Exception, match="Failed to fetch"):
                    await page.evaluate(
                        "([u, b]) => post(u, b)", [relay + "/v1/deposit", deposit.encode().hex()]
                    )
                with pytest.raises(Exception, match="websocket failed"):
                    await page.evaluate("(u) => wsOpen(u)", relay.replace("http", "ws") + "/v1/ws")
            # Nothing was stored: the preflight failed, so the POST was never sent.
            fetched = await HTTPClient(http, relay).fetch(owner, rid)
            assert fetched.envs == ()
    finally:
        await server.close()


async def _ws_send(page: Page, frame: bytes) -> None:
    await page.evaluate("(b) => wsSend(b)", frame.hex())


async def _sign_in_page(page: Page, owner: Owner, data: bytes) -> tuple[bytes, str]:
    """(signature, who signed): WebCrypto Ed25519 in the page where Chromium has it, else
    the test."""
    if not await page.evaluate("typeof crypto.subtle?.importKey === 'function'"):
        return owner.sk.sign(data).signature, "test"
    try:
        signed = await page.evaluate("([k, d]) => sign(k, d)", [_jwk(owner), data.hex()])
    except Exception as exc:  # no Ed25519 in this Chromium's WebCrypto
        if "Ed25519" not in str(exc) and "NotSupported" not in str(exc):
            raise
        return owner.sk.sign(data).signature, "test"
    return bytes.fromhex(signed), "webcrypto"
