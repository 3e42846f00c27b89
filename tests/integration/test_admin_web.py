"""The moderation page on the admin listener of an in-process relay (real app, real store,
real reports from two ``clientlib.Client``s): login, sessions, CSRF, escaping, headers, and
that the listener exists only with admin tokens and only on its own port."""

from __future__ import annotations

import io
import re
import socket
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
    admin_http,
    deposit_as_abuser,
    make,
    report_abuse,
)
from yarl import URL

from clientlib.errors import RelayRejected
from relay.admin import admin_listener_key
from relay.admin.auth import AdminAuth
from relay.app import create_app
from relay.config import ConfigError, RelayConfig, load_config

CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes" \'too\''


@pytest.fixture
def admin_config(backend: str, relay_config: RelayConfig) -> RelayConfig:
    # The login throttle has tests of its own (test_admin_attacks.py); here a moderator's
    # typos must not lock the tests out.
    return replace(
        relay_config, admin_tokens=ADMIN_TOKENS, admin_port=0, admin_login_failures_per_client=50
    )


@pytest.fixture
async def moderated(admin_config: RelayConfig) -> AsyncIterator[tuple[str, str]]:
    """(relay URL, admin base URL) of a relay with the admin listener on a free port."""
    server = TestServer(create_app(admin_config), host="127.0.0.1")
    await server.start_server()
    try:
        url = server.app[admin_listener_key].url
        assert url is not None
        yield str(server.make_url("/")), url.removesuffix("/admin/")
    finally:
        await server.close()


@pytest.fixture
async def admin(moderated: tuple[str, str]) -> AsyncIterator[AdminSession]:
    session, http = AdminSession.open(moderated[1])
    async with http:
        yield session


@pytest.fixture
async def reported(tmp_path: Path, moderated: tuple[str, str]) -> AsyncIterator[Reported]:
    relay, _ = moderated
    async with make(tmp_path, "vic", relay) as victim, make(tmp_path, "eve", relay) as abuser:
        yield await report_abuse(victim, abuser, XSS, note="note <b>bold</b> & more")


async def test_login_is_required_everywhere(admin: AdminSession, reported: Reported) -> None:
    for path in ("/admin/reports", "/admin/audit", f"/admin/reports/{reported.report_id}", "/"):
        status, _, resp = await admin.get(path)
        assert status == 303, path
        location = resp.headers["Location"]
        if path != "/":
            assert location == "/admin/login"
    status, body, _ = await admin.post(
        f"/admin/reports/{reported.report_id}/resolve", {"action": "revoke", "csrf": "x" * 64}
    )
    assert status == 403 and "Log in first" in body
    status, body, _ = await admin.get("/admin/login")
    assert status == 200 and 'type="password"' in body
    # The stylesheet is public (the login page needs it); nothing else is.
    status, body, resp = await admin.get("/admin/static/admin.css")
    assert status == 200 and resp.content_type == "text/css" and "body" in body
    assert await _report_status(admin, reported) is None  # still not logged in


async def test_bad_tokens_are_refused(admin: AdminSession) -> None:
    for token in ("", "wrong", ALICE_TOKEN[:-1], ALICE_TOKEN + "x", ALICE_TOKEN.upper(), "é" * 40):
        status, body, resp = await admin.login(token)
        assert status == 403 and "Wrong token" in body
        assert "blindrelay_admin" not in resp.cookies
        status, _, _ = await admin.get("/admin/reports")
        assert status == 303
    # The login form's CSRF token: missing, wrong, or without its pre-login cookie.
    await admin.get("/admin/login")
    status, body, _ = await admin.post("/admin/login", {"token": ALICE_TOKEN})
    assert status == 403 and "expired" in body
    status, _, _ = await admin.post("/admin/login", {"token": ALICE_TOKEN, "csrf": "0" * 64})
    assert status == 403
    csrf = admin.csrf
    admin.http.cookie_jar.clear()
    status, _, _ = await admin.post("/admin/login", {"token": ALICE_TOKEN, "csrf": csrf})
    assert status == 403
    status, _, resp = await admin.login(BOB_TOKEN)
    assert status == 303 and resp.headers["Location"] == "/admin/reports"
    status, body, _ = await admin.get("/admin/reports")
    assert status == 200 and ">bob<" in body


async def test_list_show_resolve_and_audit(
    admin: AdminSession, reported: Reported, tmp_path: Path
) -> None:
    assert (await admin.login(ALICE_TOKEN))[0] == 303
    status, body, _ = await admin.get("/admin/reports")
    assert status == 200 and reported.report_id in body
    status, body, _ = await admin.get(f"/admin/reports/{reported.report_id[:8]}")  # a prefix
    assert status == 200 and ">verified<" in body and 'id="resolve"' in body
    # Dates and words, not a day number and a wire type (issue 22, snag 7).
    assert re.search(r"key window</th><td>20\d\d-\d\d-\d\d \(UTC day \d+\)<", body)
    assert "text message (msg)" in body and "key window (day)" not in body
    status, body, _ = await admin.get("/admin/reports/" + "0" * 32)
    assert status == 404
    # Resolve: revoke the abuser's capability.
    status, _, resp = await admin.post(
        f"/admin/reports/{reported.report_id}/resolve",
        {"csrf": admin.csrf, "action": "revoke", "note": "threats <i>again</i>"},
    )
    assert status == 303
    assert resp.headers["Location"] == f"/admin/reports/{reported.report_id}?resolved=1"
    status, body, _ = await admin.get(resp.headers["Location"])
    assert "Resolved: revoke." in body and 'id="resolve"' not in body
    assert "threats &lt;i&gt;again&lt;/i&gt;" in body
    # The open list no longer has it; the resolved list does.
    assert reported.report_id not in (await admin.get("/admin/reports"))[1]
    assert reported.report_id in (await admin.get("/admin/reports?status=resolved"))[1]
    assert reported.report_id in (await admin.get("/admin/reports?status=all"))[1]
    assert (await admin.get("/admin/reports?status=bogus"))[0] == 400
    # Resolving twice is refused and changes nothing.
    status, body, _ = await admin.post(
        f"/admin/reports/{reported.report_id}/resolve", {"csrf": admin.csrf, "action": "none"}
    )
    assert status == 409 and 'id="error"' in body
    status, body, _ = await admin.get("/admin/audit")
    rows = re.findall(r'<tr class="audit">(.*?)</tr>', body)
    resolutions = [r for r in rows if reported.report_id[:12] in r and ">resolve:revoke<" in r]
    assert len(resolutions) == 1 and ">alice<" in resolutions[0]
    assert "threats &lt;i&gt;again&lt;/i&gt;" in resolutions[0]
    # The abuser's next message to the victim is refused by the relay.
    with pytest.raises(RelayRejected) as info:
        await deposit_as_abuser(reported)
    assert info.value.code == "AUTH"


async def test_suspend_needs_a_valid_send_id(admin: AdminSession, reported: Reported) -> None:
    await admin.login(ALICE_TOKEN)
    await admin.get(f"/admin/reports/{reported.report_id}")
    for bad in ("", "zz", "ab" * 15, "http://x/v1/invite#AAAA"):
        status, body, _ = await admin.post(
            f"/admin/reports/{reported.report_id}/resolve",
            {"csrf": admin.csrf, "action": "suspend", "suspend_sid": bad},
        )
        assert status == 400 and 'id="error"' in body and 'id="resolve"' in body
    status, _, _ = await admin.post(
        f"/admin/reports/{reported.report_id}/resolve", {"csrf": admin.csrf, "action": "delete"}
    )
    assert status == 400
    assert await _report_status(admin, reported) == "open"


async def test_csrf_missing_or_wrong_changes_nothing(
    admin: AdminSession, reported: Reported, moderated: tuple[str, str]
) -> None:
    await admin.login(ALICE_TOKEN)
    await admin.get(f"/admin/reports/{reported.report_id}")
    good = admin.csrf
    audit_before = (await admin.get("/admin/audit"))[1]
    # Another moderator's CSRF token is no good either.
    other, other_http = AdminSession.open(moderated[1])
    async with other_http:
        await other.login(BOB_TOKEN)
        await other.get("/admin/reports")
        foreign = other.csrf
    path = f"/admin/reports/{reported.report_id}/resolve"
    for fields in (
        {"action": "revoke"},
        {"action": "revoke", "csrf": ""},
        {"action": "revoke", "csrf": "0" * 64},
        {"action": "revoke", "csrf": good[:-1]},
        {"action": "revoke", "csrf": foreign},
        {"action": "revoke", "csrf": "é" * 64},
    ):
        status, body, _ = await admin.post(path, fields)
        assert status == 403 and "CSRF" in body
    # A cross-origin POST with the right token is refused too.
    status, _, _ = await admin.post(
        path, {"action": "revoke", "csrf": good}, headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    # Logout needs it as well.
    status, _, _ = await admin.post("/admin/logout", {})
    assert status == 403
    assert await _report_status(admin, reported) == "open"
    audit_after = (await admin.get("/admin/audit"))[1]
    assert _audit_rows(audit_after) == _audit_rows(audit_before)
    # The abuser can still send: nothing was revoked.
    await deposit_as_abuser(reported)


async def test_report_contents_are_escaped(admin: AdminSession, reported: Reported) -> None:
    await admin.login(ALICE_TOKEN)
    for path in ("/admin/reports", f"/admin/reports/{reported.report_id}"):
        _, body, _ = await admin.get(path)
        assert "<script>" not in body and "<img" not in body and "<b>bold" not in body
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
    _, body, _ = await admin.get(f"/admin/reports/{reported.report_id}")
    assert "note &lt;b&gt;bold&lt;/b&gt; &amp; more" in body
    assert "&quot;quotes&quot; &#x27;too&#x27;" in body


async def test_security_headers_and_cookie_flags(admin: AdminSession, reported: Reported) -> None:
    def check(resp: aiohttp.ClientResponse) -> None:
        h = resp.headers
        # A report page may also load the revealed images from this listener (issue 12).
        report_page = resp.url.path == f"/admin/reports/{reported.report_id}"
        assert h["Content-Security-Policy"] == CSP + ("; img-src 'self'" if report_page else "")
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["Cache-Control"] == "no-store"
        assert h["X-Frame-Options"] == "DENY"

    for path in ("/admin/login", "/admin/reports", "/admin/static/admin.css", "/admin/nowhere"):
        check((await admin.get(path))[2])
    await admin.get("/admin/login")
    status, _, resp = await admin.post("/admin/login", {"csrf": admin.csrf, "token": ALICE_TOKEN})
    assert status == 303
    check(resp)
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("blindrelay_admin=")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback ...
    admin.http.cookie_jar.clear()  # a fresh login form: its nonce is good for one attempt
    await admin.get("/admin/login")
    _, _, resp = await admin.post(
        "/admin/login",
        {"csrf": admin.csrf, "token": ALICE_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
    )
    # ... and a client cannot claim TLS: only a proxy in admin_trusted_proxies can
    # (test_admin_attacks.py: there the cookie is __Host- and Secure, with HSTS).
    assert resp.status == 303 and "Secure" not in resp.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in resp.headers
    for path in ("/admin/reports", f"/admin/reports/{reported.report_id}", "/admin/audit"):
        status, body, resp = await admin.get(path)
        assert status == 200
        check(resp)
        assert "<script" not in body.lower() and " on" + "click" not in body
        assert 'style="' not in body and "http://" not in body and "https://" not in body


async def test_logout_ends_the_session(admin: AdminSession) -> None:
    await admin.login(ALICE_TOKEN)
    await admin.get("/admin/reports")
    cookie = admin.http.cookie_jar.filter_cookies(URL(admin.base + "/"))["blindrelay_admin"].value
    status, _, resp = await admin.post("/admin/logout", {"csrf": admin.csrf})
    assert status == 303 and resp.headers["Location"] == "/admin/login"
    assert (await admin.get("/admin/reports"))[0] == 303
    # The old cookie, replayed, is dead too.
    async with (
        admin_http() as http,
        http.get(
            admin.base + "/admin/reports",
            headers={"Cookie": f"blindrelay_admin={cookie}"},
            allow_redirects=False,
        ) as r,
    ):
        assert r.status == 303


async def test_nothing_secret_is_logged(
    admin: AdminSession, reported: Reported, relay_log: io.StringIO
) -> None:
    start = len(relay_log.getvalue())
    await admin.login("wrong-" + ALICE_TOKEN)
    await admin.login(ALICE_TOKEN)
    await admin.get(f"/admin/reports/{reported.report_id}")
    await admin.post(
        f"/admin/reports/{reported.report_id}/resolve",
        {"csrf": admin.csrf, "action": "none", "note": "secret-note-123"},
    )
    await admin.get("/admin/audit")
    cookie = admin.http.cookie_jar.filter_cookies(URL(admin.base + "/"))["blindrelay_admin"]
    text = relay_log.getvalue()[start:]
    assert "admin_request_handled" in text and "admin_login_failed" in text
    for secret in (
        ALICE_TOKEN,
        ALICE_TOKEN[:16],
        cookie.value.split(".")[0],
        admin.csrf,
        reported.report_id,
        "alert",
        "secret-note-123",
        "bold",
    ):
        assert secret not in text


def test_sessions_expire_and_forged_cookies_fail() -> None:
    now = [1_000_000.0]
    auth = AdminAuth({"alice": ALICE_TOKEN}, 3600, clock=lambda: now[0])
    assert auth.check_token(ALICE_TOKEN) == "alice" and auth.check_token(BOB_TOKEN) is None
    session, cookie = auth.login("alice")
    assert auth.session(cookie) is session
    sid, expires, mac = cookie.split(".")
    for forged in (
        f"{sid}.{int(expires) + 9999}.{mac}",  # a later expiry
        f"{'0' * 64}.{expires}.{mac}",  # another id
        f"{sid}.{expires}.{'0' * 64}",  # another mac
        f"{sid}.{expires}",
        "",
        "a.b.c",
    ):
        assert auth.session(forged) is None
    assert auth.check_csrf(session, auth.csrf_token(session))
    now[0] += 3601
    assert auth.session(cookie) is None
    nonce, csrf = auth.login_nonce()
    assert auth.check_login_csrf(nonce, csrf)
    now[0] += 601
    assert not auth.check_login_csrf(nonce, csrf)
    assert "alice" not in repr(session) or ALICE_TOKEN not in repr(auth)
    assert ALICE_TOKEN not in repr(auth) and session.sid not in repr(session)


async def test_listener_is_off_without_tokens(relay_config: RelayConfig) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = replace(relay_config, admin_port=port)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        assert server.app[admin_listener_key].url is None
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    finally:
        await server.close()


async def test_public_listener_does_not_serve_admin(
    moderated: tuple[str, str], admin: AdminSession
) -> None:
    relay, _ = moderated
    async with aiohttp.ClientSession() as http:
        for path in ("admin", "admin/", "admin/login", "admin/reports", "admin/static/admin.css"):
            async with http.get(relay + path, allow_redirects=False) as r:
                assert r.status == 404, path
        async with http.post(relay + "admin/login", data={"token": ALICE_TOKEN}) as r:
            assert r.status in (404, 405)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("alice:short", "at least 32"),
        ("alice", "name:token"),
        (":" + "x" * 40, "name:token"),
        ("al ice:" + "x" * 40, "name:token"),
        (f"alice:{ALICE_TOKEN},alice:{BOB_TOKEN}", "unique"),
        (f"alice:{ALICE_TOKEN},bob:{ALICE_TOKEN}", "unique"),
        ("alice:" + "x" * 35 + " yz", "printable"),
        # Long enough but guessable: one repeated letter, a short repeated pattern, a word
        # padded with one letter (the test tokens of before).
        ("alice:" + "a" * 32, "guessable"),
        ("alice:" + "0123456789abcdef" * 2, "guessable"),
        ("alice:alice-token-" + "a" * 40, "guessable"),
    ],
)
def test_admin_tokens_are_validated(tokens: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(environ={"BLINDRELAY_ADMIN_TOKENS": tokens})
    assert "x" * 32 not in str(info.value) and ALICE_TOKEN not in str(info.value)


def test_admin_tokens_from_a_file_are_secret(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(ADMIN_TOKENS + "\n")
    config = load_config(environ={"BLINDRELAY_ADMIN_TOKENS_FILE": str(f)})
    assert config.admin_enabled and set(config.admin_token_map()) == {"alice", "bob"}
    assert ALICE_TOKEN not in repr(config) and config.redacted()["admin_tokens"] == "***"
    assert load_config(environ={}).redacted()["admin_tokens"] == ""
    toml = tmp_path / "relay.toml"
    toml.write_text(f'[relay]\nadmin_tokens_file = "{f}"\nadmin_port = 9999\n')
    from_file = load_config(toml, environ={})
    assert from_file.admin_token_map()["bob"] == BOB_TOKEN and from_file.admin_port == 9999
    with pytest.raises(ConfigError, match="admin_port"):
        load_config(environ={"BLINDRELAY_ADMIN_TOKENS": ADMIN_TOKENS, "BLINDRELAY_PORT": "7481"})


# --- helpers --------------------------------------------------------------------------------


async def _report_status(admin: AdminSession, reported: Reported) -> str | None:
    status, body, _ = await admin.get(f"/admin/reports/{reported.report_id}")
    if status != 200:
        return None
    found = re.search(r'<span class="status (open|done)">', body)
    assert found
    return "open" if found.group(1) == "open" else "resolved"


def _audit_rows(body: str) -> list[str]:
    return re.findall(r'<tr class="audit">(.*?)</tr>', body)
