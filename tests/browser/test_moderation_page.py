"""A moderator resolves a genuine abuse report in headless Chromium.

A real relay (the app on a loopback socket, SQLite, admin listener on a free port), two real
``clientlib.Client``s (the abuser's threatening message, the victim's verified report), and
Chromium driven over the DevTools protocol (``cdp.py``): log in with the token, find the
report in the queue, open it, see it verified and its text escaped, revoke, see it resolved
and audited, log out. Then the relay refuses the abuser's next message to the victim.

Without a Chromium binary the test is skipped, but when ``CI`` is set it fails instead, so a
CI image cannot silently lose the browser coverage (like the Redis tests).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from cdp import Browser, Page, find_chromium
from reportkit import (
    ADMIN_TOKENS,
    ALICE_TOKEN,
    deposit_as_abuser,
    make,
    report_abuse,
    wait_for,
)

from clientlib.client import ReportResolved
from clientlib.errors import RelayRejected
from relay.admin import admin_listener_key
from relay.app import create_app
from relay.config import RelayConfig

THREAT = "I know where you live <script>document.title='pwned'</script> & I'll be there"


@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary, and CI is set (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium binary (apt-get install chromium)")
    return binary


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """(relay URL, moderation page URL) of a relay on SQLite with the admin listener."""
    config = RelayConfig(
        data_dir=str(tmp_path / "data"),
        purge_interval_s=3600,
        admin_tokens=ADMIN_TOKENS,
        admin_port=0,
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        admin = server.app[admin_listener_key].url
        assert admin is not None
        yield str(server.make_url("/")).rstrip("/"), admin
    finally:
        await server.close()


async def test_moderator_revokes_a_verified_report_in_chromium(
    tmp_path: Path, chromium: str, relay: tuple[str, str]
) -> None:
    relay_url, admin_url = relay
    async with (
        make(tmp_path, "vic", relay_url) as victim,
        make(tmp_path, "eve", relay_url) as abuser,
    ):
        reported = await report_abuse(victim, abuser, THREAT, reason="threats", note="scared")
        rid = reported.report_id
        await deposit_as_abuser(reported)  # before the moderator acts, the abuser gets through

        async with Browser.launch(tmp_path, chromium) as browser:
            page = await browser.page()
            # Not logged in: every page sends us to the login form.
            await page.goto(admin_url)
            assert (await page.url()).endswith("/admin/login")
            await page.fill("#token", "not-the-token-" + "x" * 30)
            await page.submit("#login")
            assert "Wrong token" in await page.text("#error")
            await page.fill("#token", ALICE_TOKEN)
            await page.submit("#login")
            assert (await page.url()).endswith("/admin/reports")
            assert await page.text("h2") == "Open reports"
            await _check_page_hygiene(page)
            cookies = {c["name"]: c for c in await page.cookies()}
            session = cookies["blindrelay_admin"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert session["path"] == "/" and not session["session"]  # it expires

            # The queue lists the report, verified.
            row = await page.text(f'tr.report:has(a[href="/admin/reports/{rid}"])')
            assert rid[:12] in row and "verified" in row and "threats" in row
            await page.click(f'a[href="/admin/reports/{rid}"]')
            assert (await page.url()).endswith(f"/admin/reports/{rid}")
            verification = await page.text("#verification")
            assert "verified" in verification and "NOT verified" not in verification
            assert "commitment" in verification and "relay_tag" in verification
            # The message is shown as text: the script in it is neither markup nor run.
            assert await page.text("#message") == THREAT
            assert await page.count("script") == 0
            assert "pwned" not in await page.evaluate("document.title")
            assert "scared" in await page.text("#context")
            await _check_page_hygiene(page)

            # Revoke the sender's capability, with a note.
            await page.check("#action-revoke")
            await page.fill("#note", "threat of violence")
            await page.click("#resolve-button")
            assert (await page.url()).endswith(f"/admin/reports/{rid}?resolved=1")
            assert "Resolved: revoke." in await page.text("#notice")
            assert await page.text("#status") == "resolved (revoke)"
            resolution = await page.text("#resolution")
            assert "alice" in resolution and "threat of violence" in resolution
            assert await page.count("#resolve") == 0  # no second resolution

            # Gone from the open queue, in the audit log with the moderator's name.
            await page.click('nav a[href="/admin/reports"]')
            assert await page.count(f'a[href="/admin/reports/{rid}"]') == 0
            await page.click('nav a[href="/admin/audit"]')
            audit = await page.text("#audit")
            lines = [ln for ln in audit.splitlines() if "resolve:revoke" in ln]
            assert len(lines) == 1 and "alice" in lines[0] and rid[:12] in lines[0]
            assert "threat of violence" in lines[0]
            await _check_page_hygiene(page)

            # Log out: the session is over.
            await page.click("#logout")
            assert (await page.url()).endswith("/admin/login")
            await page.goto(admin_url + "reports")
            assert (await page.url()).endswith("/admin/login")
            assert not [m for m in page.console_messages() if "Content Security Policy" in m]

        # The relay now refuses the abuser's next message to the victim ...
        with pytest.raises(RelayRejected) as info:
            await deposit_as_abuser(reported)
        assert info.value.code == "AUTH"
        # ... and the victim's client learns the outcome of the report.
        await victim.check_reports()
        resolved = await wait_for(victim, ReportResolved, lambda e: e.report_id == rid)
        assert resolved.action == "revoke"


async def _check_page_hygiene(page: Page) -> None:
    """The stylesheet (the only asset) loaded under the CSP; no script anywhere."""
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(246, 246, 248)"
    assert await page.count("script") == 0
    assert await page.count("[style]") == 0
    assert await page.evaluate("document.styleSheets.length") == 1
