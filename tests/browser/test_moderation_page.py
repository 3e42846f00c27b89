"""A moderator resolves a genuine abuse report in headless Chromium.

A real relay (the app on a loopback socket, SQLite, admin listener on a free port), two real
``clientlib.Client``s (the abuser's threatening message, the victim's verified report), and
Chromium driven by Playwright (``browserkit.py``): log in with the token, find the
report in the queue, open it, see it verified and its text escaped, revoke, see it resolved
and audited, log out. Then the relay refuses the abuser's next message to the victim.

Without a Chromium binary the test is skipped, but when ``CI`` is set it fails instead, so a
CI image cannot silently lose the browser coverage (like the Redis tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from browserkit import Console, Page, launch, require_chromium
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
    return require_chromium()


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

        async with launch(chromium) as browser:
            context = await browser.new_context()
            page = await context.new_page()
            console = Console(page)
            # Not logged in: every page sends us to the login form.
            await page.goto(admin_url)
            assert page.url.endswith("/admin/login")
            await page.fill("#token", "not-the-token-" + "x" * 30)
            await submit(page, "#login")
            assert "Wrong token" in await page.inner_text("#error")
            await page.fill("#token", ALICE_TOKEN)
            await submit(page, "#login")
            assert page.url.endswith("/admin/reports")
            assert await page.inner_text("h2") == "Open reports"
            await _check_page_hygiene(page)
            cookies = {c["name"]: c for c in await context.cookies()}
            session = cookies["blindrelay_admin"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert session["path"] == "/" and session["expires"] != -1  # it expires

            # The queue lists the report, verified.
            row = await page.inner_text(f'tr.report:has(a[href="/admin/reports/{rid}"])')
            assert rid[:12] in row and "verified" in row and "threats" in row
            await click(page, f'a[href="/admin/reports/{rid}"]')
            assert page.url.endswith(f"/admin/reports/{rid}")
            verification = await page.inner_text("#verification")
            assert "verified" in verification and "NOT verified" not in verification
            assert "commitment" in verification and "relay_tag" in verification
            # The message is shown as text: the script in it is neither markup nor run.
            assert await page.inner_text("#message") == THREAT
            assert await page.locator("script").count() == 0
            assert "pwned" not in await page.evaluate("document.title")
            assert "scared" in await page.inner_text("#context")
            await _check_page_hygiene(page)

            # Revoke the sender's capability, with a note.
            await page.check("#action-revoke")
            await page.fill("#note", "threat of violence")
            await click(page, "#resolve-button")
            assert page.url.endswith(f"/admin/reports/{rid}?resolved=1")
            assert "Resolved: revoke." in await page.inner_text("#notice")
            assert await page.inner_text("#status") == "resolved (revoke)"
            resolution = await page.inner_text("#resolution")
            assert "alice" in resolution and "threat of violence" in resolution
            assert await page.locator("#resolve").count() == 0  # no second resolution

            # Gone from the open queue, in the audit log with the moderator's name.
            await click(page, 'nav a[href="/admin/reports"]')
            assert await page.locator(f'a[href="/admin/reports/{rid}"]').count() == 0
            await click(page, 'nav a[href="/admin/audit"]')
            audit = await page.inner_text("#audit")
            lines = [ln for ln in audit.splitlines() if "resolve:revoke" in ln]
            assert len(lines) == 1 and "alice" in lines[0] and rid[:12] in lines[0]
            assert "threat of violence" in lines[0]
            await _check_page_hygiene(page)

            # Log out: the session is over.
            await click(page, "#logout")
            assert page.url.endswith("/admin/login")
            await page.goto(admin_url + "reports")
            assert page.url.endswith("/admin/login")
            assert not console.matching("Content Security Policy")
            # ... and the console capture does see a violation when there is one.
            await page.evaluate(
                "document.body.appendChild(Object.assign(document.createElement('img'),"
                " {src: 'http://127.0.0.1:9/x.png'}))"
            )
            await page.wait_for_timeout(200)
            assert console.matching("Content Security Policy")

        # The relay now refuses the abuser's next message to the victim ...
        with pytest.raises(RelayRejected) as info:
            await deposit_as_abuser(reported)
        assert info.value.code == "AUTH"
        # ... and the victim's client learns the outcome of the report.
        await victim.check_reports()
        resolved = await wait_for(victim, ReportResolved, lambda e: e.report_id == rid)
        assert resolved.action == "revoke"


async def submit(page: Page, form: str) -> None:
    """Submit a form with its own submit button (as a user would) and wait for the result."""
    async with page.expect_navigation():
        await page.click(f'{form} button[type="submit"]')


async def click(page: Page, selector: str) -> None:
    """Click a link or a button and wait for the next page."""
    async with page.expect_navigation():
        await page.click(selector)


async def _check_page_hygiene(page: Page) -> None:
    """The stylesheet (the only asset) loaded under the CSP; no script anywhere."""
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(246, 246, 248)"
    assert await page.locator("script").count() == 0
    assert await page.locator("[style]").count() == 0
    assert await page.evaluate("document.styleSheets.length") == 1
