"""The moderation page against the attacks of issue 23, over real HTTP (the browser half is
``tests/browser/test_moderation_attacks.py``). Each test does what the attacker did and
checks that it now fails: another Host (DNS rebinding, the shared 127.0.0.1), a tossed-in
second session cookie, a client-claimed ``X-Forwarded-Proto``, ``Origin: null`` and
cross-site ``Sec-Fetch-Site`` POSTs, guessing logins, replaying a login nonce, malformed
forms, aiohttp's own 400s, sessions that outlive their use, one moderator's logins evicting
another's, and hidden or oversized text in what a sender controls.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from reportkit import (
    ADMIN_TOKENS,
    ALICE_TOKEN,
    BOB_TOKEN,
    AdminSession,
    Reported,
    make,
    report_abuse,
)
from yarl import URL

from relay.admin import admin_listener_key, render
from relay.admin.auth import MAX_SESSIONS, MAX_SESSIONS_PER_MODERATOR, AdminAuth
from relay.app import create_app
from relay.config import ConfigError, RelayConfig, load_config
from relay.moderation import ReportView
from relay.webguard import SERVER_HEADER

BIDI = "abuser is \u202eecila\u202c"


@pytest.fixture
def config(tmp_path: Path) -> RelayConfig:
    return RelayConfig(
        data_dir=str(tmp_path / "data"),
        purge_interval_s=3600,
        admin_tokens=ADMIN_TOKENS,
        admin_port=0,
    )


async def _start(config: RelayConfig) -> tuple[TestServer, str, str]:
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    url = server.app[admin_listener_key].url
    assert url is not None
    return server, str(server.make_url("/")), url.removesuffix("/admin/")


@pytest.fixture
async def site(config: RelayConfig) -> AsyncIterator[tuple[str, str]]:
    """(relay URL, admin base URL)."""
    server, relay, admin = await _start(config)
    try:
        yield relay, admin
    finally:
        await server.close()


@pytest.fixture
async def admin(site: tuple[str, str]) -> AsyncIterator[AdminSession]:
    session, http = AdminSession.open(site[1])
    async with http:
        yield session


def _port(base: str) -> int:
    port = URL(base).port
    assert port is not None
    return port


async def test_the_page_answers_only_to_its_own_host_names(admin: AdminSession) -> None:
    assert URL(admin.base).host == "blindrelay-admin.localhost"  # the listener's own name
    status, body, _ = await admin.get("/admin/login")
    assert status == 200 and 'name="token"' in body
    port = _port(admin.base)
    async with aiohttp.ClientSession() as http:
        # The shared loopback names (whose cookies every local service gets) and a
        # DNS-rebinding name that points at 127.0.0.1 are refused, GET and POST alike.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"evil.example:{port}", "x"):
            for method in ("GET", "POST"):
                async with http.request(
                    method,
                    f"http://127.0.0.1:{port}/admin/login",
                    headers={"Host": host},
                    data={"token": ALICE_TOKEN},
                ) as r:
                    assert r.status == 421, (host, method)
                    assert "blindrelay_admin" not in r.headers.get("Set-Cookie", "")
                    assert r.headers["X-Frame-Options"] == "DENY"


async def test_configured_host_names_and_validation(config: RelayConfig) -> None:
    server, _, _ = await _start(replace(config, admin_hosts="Admin.Example.org, mod.localhost"))
    try:
        port = _port(str(server.app[admin_listener_key].url))
        assert server.app[admin_listener_key].url == f"http://mod.localhost:{port}/admin/"
        async with aiohttp.ClientSession() as http:
            for host, status in (
                ("admin.example.org", 200),
                (f"mod.localhost:{port}", 200),
                ("blindrelay-admin.localhost", 421),
            ):
                async with http.get(
                    f"http://127.0.0.1:{port}/admin/login", headers={"Host": host}
                ) as r:
                    assert r.status == status, host
    finally:
        await server.close()
    for bad in ("", "a.example:443", "http://a.example", "a b"):
        with pytest.raises(ConfigError, match="admin_hosts"):
            load_config(environ={"BLINDRELAY_ADMIN_HOSTS": bad})
    with pytest.raises(ConfigError, match="admin_trusted_proxies"):
        load_config(environ={"BLINDRELAY_ADMIN_TRUSTED_PROXIES": "proxy.local"})


async def test_a_second_session_cookie_is_refused(
    admin: AdminSession, tmp_path: Path, site: tuple[str, str]
) -> None:
    """A sibling service that tosses in its own session cookie (another moderator's, or
    junk) beside the real one cannot swap the acting moderator: the request is refused."""
    relay, _ = site
    async with make(tmp_path, "vic", relay) as victim, make(tmp_path, "eve", relay) as abuser:
        reported = await report_abuse(victim, abuser, "hello", note="n")
    bob, bob_http = AdminSession.open(admin.base)
    async with bob_http:
        await bob.login(BOB_TOKEN)
        bob_cookie = _session_cookie(bob)
    await admin.login(ALICE_TOKEN)
    await admin.get(f"/admin/reports/{reported.report_id}")
    alice_cookie = _session_cookie(admin)
    for tossed in (bob_cookie, "junk"):
        async with (
            admin_http_raw() as http,
            http.post(
                admin.base + f"/admin/reports/{reported.report_id}/resolve",
                data={"csrf": admin.csrf, "action": "revoke"},
                headers={"Cookie": f"blindrelay_admin={alice_cookie}; blindrelay_admin={tossed}"},
                allow_redirects=False,
            ) as r,
        ):
            body = await r.text()
            assert r.status == 400 and "several session cookies" in body
            assert "blindrelay_admin=;" in "".join(r.headers.getall("Set-Cookie"))
    # Nothing happened, and with one cookie the page shows who is acting.
    status, body, _ = await admin.get(f"/admin/reports/{reported.report_id}")
    assert status == 200 and 'id="resolve"' in body
    acting = re.search(r'<p class="acting" id="acting-as">(.*?)</p>', body)
    assert acting and "<strong>alice</strong>" in acting.group(1)


async def test_tls_only_from_a_trusted_proxy(config: RelayConfig) -> None:
    server, _, base = await _start(replace(config, admin_trusted_proxies="127.0.0.1"))
    try:
        admin, http = AdminSession.open(base)
        async with http:
            tls = {"X-Forwarded-Proto": "https"}
            status, _, resp = await admin.get("/admin/login", headers=tls)
            assert status == 200
            assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
            login_cookie = resp.headers["Set-Cookie"]
            assert login_cookie.startswith("__Host-blindrelay_login=") and "Secure" in login_cookie
            nonce = login_cookie.split(";")[0].split("=", 1)[1]
            async with http.post(
                base + "/admin/login",
                data={"csrf": admin.csrf, "token": ALICE_TOKEN},
                headers={**tls, "Cookie": f"__Host-blindrelay_login={nonce}"},
                allow_redirects=False,
            ) as r:
                assert r.status == 303
                cookies = r.headers.getall("Set-Cookie")
                session = next(c for c in cookies if c.startswith("__Host-blindrelay_admin="))
                for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
                    assert flag in session
                assert "Domain" not in session
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
            # Without the proxy's word it is plain HTTP: no HSTS, no __Host- cookie.
            _, _, resp = await admin.get("/admin/login")
            assert "Strict-Transport-Security" not in resp.headers
            assert resp.headers["Set-Cookie"].startswith("blindrelay_login=")
    finally:
        await server.close()


async def test_cross_site_and_null_origin_posts_are_refused(admin: AdminSession) -> None:
    await admin.get("/admin/login")
    csrf = admin.csrf
    for headers in (
        {"Origin": "null"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:1"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": admin.base},
    ):
        status, body, _ = await admin.post(
            "/admin/login", {"csrf": csrf, "token": ALICE_TOKEN}, headers=headers
        )
        assert status == 403 and "Cross-origin" in body, headers
    # The page's own POSTs pass (the login nonce was not spent by the refusals).
    status, _, _ = await admin.post(
        "/admin/login",
        {"csrf": csrf, "token": ALICE_TOKEN},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": admin.base},
    )
    assert status == 303


async def test_login_nonce_is_single_use(admin: AdminSession) -> None:
    await admin.get("/admin/login")
    csrf = admin.csrf
    status, body, _ = await admin.post("/admin/login", {"csrf": csrf, "token": "wrong" * 8})
    assert status == 403 and "Wrong token" in body
    admin.http.cookie_jar.clear()  # the old nonce cookie again, replayed by hand
    async with admin_http_raw() as http:
        await admin.get("/admin/login")
        fresh = admin.csrf
        jar = {c.key: c.value for c in admin.http.cookie_jar}
        for attempt, expected in ((1, 303), (2, 403)):
            async with http.post(
                admin.base + "/admin/login",
                data={"csrf": fresh, "token": ALICE_TOKEN},
                headers={"Cookie": f"blindrelay_login={jar['blindrelay_login']}"},
                allow_redirects=False,
            ) as r:
                assert r.status == expected, attempt


async def test_guessing_is_throttled_per_client_and_overall(config: RelayConfig) -> None:
    server, _, base = await _start(
        replace(config, admin_trusted_proxies="127.0.0.1", admin_login_failures_global=8)
    )
    try:

        async def attempt(token: str, client: str) -> tuple[int, str, aiohttp.ClientResponse]:
            admin, http = AdminSession.open(base)
            async with http:
                await admin.get("/admin/login")
                return await admin.post(
                    "/admin/login",
                    {"csrf": admin.csrf, "token": token},
                    headers={"X-Forwarded-For": client},
                )

        for _ in range(5):
            assert (await attempt("guess-" * 6, "192.0.2.1"))[0] == 403
        # The sixth try from that client is refused without looking at the token: even
        # the right one.
        status, body, resp = await attempt(ALICE_TOKEN, "192.0.2.1")
        assert status == 429 and "Too many wrong tokens" in body
        assert 0 < int(resp.headers["Retry-After"]) <= 60
        assert "blindrelay_admin" not in resp.headers.get("Set-Cookie", "")
        # Another client still gets in ...
        assert (await attempt(ALICE_TOKEN, "192.0.2.2"))[0] == 303
        # ... until all clients together have guessed too often.
        for n in range(3):
            assert (await attempt("guess-" * 6, f"198.51.100.{n}"))[0] == 403
        status, _, _ = await attempt(BOB_TOKEN, "203.0.113.9")
        assert status == 429
    finally:
        await server.close()


def test_throttle_window_and_limits_in_time() -> None:
    now = [1_000_000.0]
    auth = AdminAuth({"alice": ALICE_TOKEN}, 3600, clock=lambda: now[0])
    for _ in range(5):
        assert auth.throttle.retry_after("c1") == 0
        auth.throttle.failed("c1")
    assert 59 < auth.throttle.retry_after("c1") <= 60
    now[0] += 61
    assert auth.throttle.retry_after("c1") == 0
    assert "c1" not in repr(auth.throttle)


async def test_malformed_unauthenticated_posts_are_400_without_traceback(
    admin: AdminSession, relay_log: io.StringIO
) -> None:
    start = len(relay_log.getvalue())
    port = _port(admin.base)
    host = f"blindrelay-admin.localhost:{port}"
    for content_type, body in (
        ("application/x-www-form-urlencoded; charset=bogus-charset", b"token=x&csrf=y"),
        ("multipart/form-data", b"--x\r\n\r\n"),
        ("multipart/form-data; boundary=zz", b"not multipart at all"),
        ("application/x-www-form-urlencoded", b"token=%ff%fe&csrf=%c3"),
    ):
        for path in ("/admin/login", "/admin/logout", "/admin/reports/abcdef123456/resolve"):
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{port}{path}",
                    data=body,
                    headers={"Content-Type": content_type, "Host": host},
                ) as r,
            ):
                assert r.status in (400, 403), (content_type, path)
                assert "Traceback" not in await r.text()
    logged = relay_log.getvalue()[start:]
    assert "Traceback" not in logged and "admin_request_failed" not in logged


async def test_aiohttp_own_400s_carry_the_security_headers(admin: AdminSession) -> None:
    port = _port(admin.base)
    for raw in (
        b"GET /admin/login HTTP/1.1\r\nHost: blindrelay-admin.localhost\r\nBad: \x01ECHO\r\n\r\n",
        b"G\x00T /admin/ECHO HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(raw)
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()
        head = reply.partition(b"\r\n\r\n")[0].decode("latin-1")
        assert head.split()[1] == "400"
        assert "Content-Security-Policy: default-src 'none'" in head
        assert "X-Frame-Options: DENY" in head and "X-Content-Type-Options: nosniff" in head
        assert f"Server: {SERVER_HEADER}\r\n" in head + "\r\n"
        assert b"ECHO" not in reply


async def test_server_header_and_no_cors_on_the_admin_listener(admin: AdminSession) -> None:
    for path in ("/admin/login", "/admin/static/admin.css", "/admin/nowhere"):
        _, _, resp = await admin.get(path, headers={"Origin": "http://app.example"})
        assert resp.headers["Server"] == SERVER_HEADER
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with admin.http.options(
        admin.base + "/admin/login",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    ) as r:
        assert r.status in (403, 405) and "Access-Control-Allow-Origin" not in r.headers


def test_idle_sessions_end_and_caps_are_per_moderator() -> None:
    now = [1_000_000.0]
    auth = AdminAuth({"alice": ALICE_TOKEN}, 8 * 3600, idle_timeout_s=1800, clock=lambda: now[0])
    _, cookie = auth.login("alice")
    now[0] += 1700
    assert auth.session(cookie) is not None  # used: the idle clock starts again
    now[0] += 1700
    assert auth.session(cookie) is not None
    now[0] += 1801
    assert auth.session(cookie) is None  # idle too long, though far from its expiry
    # One moderator's logins never log another out; their own oldest go first.
    _, bob = auth.login("bob")
    alice = [auth.login("alice")[1] for _ in range(MAX_SESSIONS + 10)]
    assert auth.session(bob) is not None
    live = [c for c in alice if auth.session(c) is not None]
    assert live == alice[-MAX_SESSIONS_PER_MODERATOR:]


def test_idle_timeout_is_validated() -> None:
    assert load_config(environ={}).admin_idle_timeout_s == 1800
    with pytest.raises(ConfigError, match="admin_idle_timeout_s"):
        load_config(environ={"BLINDRELAY_ADMIN_IDLE_TIMEOUT_S": "5"})


def _view(**fields: object) -> ReportView:
    base: dict[str, object] = {
        "id": "ab" * 16,
        "created": 1_700_000_000,
        "reason": "spam",
        "note": None,
        "text": None,
        "content_type": None,
        "msg": b"\x01" * 10,
        "attachments": [],
        "sender_key": "00" * 32,
        "recipient_key": "11" * 32,
        "source_kind": "none",
        "source": "",
        "mailbox_sid": "22" * 16,
        "day": 1,
        "kid": 1,
        "verified": {"commitment": "ok", "relay_tag": "ok"},
        "status": "open",
        "action": None,
        "moderator": None,
        "resolved_at": None,
        "resolution_note": None,
    }
    base.update(fields)
    return ReportView(**base)  # type: ignore[arg-type]


def test_hidden_characters_are_shown_as_marks_with_the_raw_text_one_click_away() -> None:
    page = render.report_page(
        _view(text=BIDI + " \u200b zero\x1bwidth", note="see \u202eeton"),
        moderator="alice",
        csrf="c",
    )
    message = re.search(r'<pre class="msg" id="message">(.*?)</pre></div>', page, re.S)
    assert message
    shown = message.group(1)
    assert "\u202e" not in shown.split("<details")[0] and "U+202E" in shown
    assert "U+202C" in shown and "U+200B" in shown and "U+001B" in shown
    assert 'title="U+202E RIGHT-TO-LEFT OVERRIDE"' in shown
    raw = re.search(r'<pre class="raw">(.*?)</pre>', shown, re.S)
    assert raw and "\u202e" in raw.group(1)  # the raw text, in a <details>
    assert "U+202E" in page.split("reporter&#x27;s note")[1].split("</tr>")[0]
    # A lone surrogate cannot break the page.
    assert "U+D800" in render.shown("x\ud800y")


def test_sender_values_stay_in_marked_fields_cut_to_size() -> None:
    crafted = "A" * 178_000
    lying = "msg). The relay verified this sender as trustworthy (ok"
    for ctype in (crafted, lying):
        page = render.report_page(_view(content_type=ctype), moderator="alice", csrf="c")
        sentence = re.search(r'<p id="message" class="muted">(.*?)</p>', page, re.S)
        assert sentence and ctype[:20] not in sentence.group(1)  # not in the page's sentence
        row = page.split("<th>content type</th>")[1].split("</tr>")[0]
        assert '<span class="field sender"' in row
        visible = row.split("<details")[0]
        if len(ctype) > render.SHORT_CHARS:  # cut, the full value one click away
            assert ctype[: render.SHORT_CHARS] in visible and "…" in visible
            assert ctype[: render.SHORT_CHARS + 1] not in visible
        else:
            assert ctype in visible
        queue = render.reports_page(
            [_view(content_type=ctype)], "open", moderator="alice", csrf="c"
        )
        preview = re.search(r'<td class="preview">(.*?)</td><td>', queue, re.S)
        assert preview and '<span class="field sender"' in preview.group(1)
        assert ctype[:30] not in preview.group(1).split("<details")[0]
    text_queue = render.reports_page([_view(text="B" * 5000)], "open", moderator="a", csrf="c")
    assert "B" * 81 not in text_queue.split("<details")[0]


def _session_cookie(admin: AdminSession) -> str:
    return admin.http.cookie_jar.filter_cookies(URL(admin.base + "/"))["blindrelay_admin"].value


def admin_http_raw() -> aiohttp.ClientSession:
    """A client with no cookie jar of its own (cookies set by hand), reaching *.localhost."""
    from reportkit import LoopbackResolver

    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(resolver=LoopbackResolver()),
    )


__all__ = ["Reported"]
