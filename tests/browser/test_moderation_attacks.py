"""The moderation page attacked in headless Chromium (issue 23, part 2), each attack as it was
done and now failing for the attacker:

- the session cookie on a second local port: the moderator logs in on the page's own name
  (``blindrelay-admin.localhost``) and then opens another local service on 127.0.0.1 and on
  localhost; that service never receives the cookie, and its own cookie never reaches the
  page; the page itself refuses to be used on 127.0.0.1;
- DNS rebinding: a name the attacker points at 127.0.0.1 gets no page;
- a bidi override in a reported message: it shows as a visible ``U+202E`` mark, not as
  "alice", with the raw text one click away;
- a long unbreakable message, and a crafted 178,000-character content type that reads like
  the relay's own words: the queue's status column stays on screen and the content type
  stays in its marked box, out of the page's sentences;
- oversized cookies planted by another local service: they never reach the page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from browserkit import BrowserContext, Page, launch, require_chromium
from playwright.async_api import Route
from reportkit import ADMIN_TOKENS, ALICE_TOKEN, make, report_abuse

from relay.admin import admin_listener_key, render
from relay.app import create_app
from relay.config import RelayConfig
from relay.moderation import ReportView

BIDI = "abuser is \u202eecila\u202c"
REBIND = "rebind.attacker.test"


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
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
        assert admin is not None and admin.startswith("http://blindrelay-admin.localhost:")
        yield str(server.make_url("/")), admin
    finally:
        await server.close()


@pytest.fixture
async def other_service() -> AsyncIterator[tuple[int, list[str]]]:
    """Another local service (port, Cookie headers it received); it also tries to plant a
    session cookie of its own."""
    seen: list[str] = []

    async def page(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        response = web.Response(
            text="<html><body>other service</body></html>", content_type="text/html"
        )
        response.set_cookie("blindrelay_admin", "planted.1.x", path="/")
        for n in range(5):  # together far over the 8 KiB a request header may have
            response.set_cookie(f"big{n}", "z" * 4000, path="/")
        return response

    app = web.Application()
    app.router.add_get("/", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server.port, seen
    finally:
        await server.close()


async def _login(page: Page, admin_url: str) -> None:
    await page.goto(admin_url + "login")
    await page.fill("#token", ALICE_TOKEN)
    async with page.expect_navigation():
        await page.click('#login button[type="submit"]')
    assert page.url.endswith("/admin/reports")


async def test_the_cookie_stays_on_the_pages_own_host(
    chromium: str, relay: tuple[str, str], other_service: tuple[int, list[str]]
) -> None:
    _, admin_url = relay
    port, seen = other_service
    async with launch(chromium) as browser:
        context = await browser.new_context()
        page = await context.new_page()
        # The page refuses to be used on the shared loopback names.
        for shared in ("127.0.0.1", "localhost"):
            response = await page.goto(admin_url.replace("blindrelay-admin.localhost", shared))
            assert response is not None and response.status == 421
            assert await page.locator("#token").count() == 0
        await _login(page, admin_url)
        session = [c for c in await context.cookies() if c["name"] == "blindrelay_admin"]
        assert len(session) == 1 and session[0]["domain"] == "blindrelay-admin.localhost"
        # The moderator opens another local service: it gets no cookie of the page.
        for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/"):
            await page.goto(url)
            assert await page.inner_text("body") == "other service"
        assert len(seen) == 2 and not any("blindrelay_admin" in c for c in seen)
        # Its planted cookies (a session cookie of its own, 20 KB of junk) live on its own
        # hosts: the page still loads, and still knows alice.
        planted = {c["domain"] for c in await context.cookies() if c["name"].startswith("big")}
        assert planted == {"127.0.0.1", "localhost"}
        await page.goto(admin_url + "reports")
        assert await page.inner_text("nav .who") == "alice"
        await _check_one_session_cookie(context)


async def _check_one_session_cookie(context: BrowserContext) -> None:
    names = [c["name"] for c in await context.cookies(["http://blindrelay-admin.localhost/"])]
    assert names.count("blindrelay_admin") == 1 and not any(n.startswith("big") for n in names)


async def test_a_rebinding_name_gets_no_page(chromium: str, relay: tuple[str, str]) -> None:
    _, admin_url = relay
    async with launch(chromium, extra_hosts=[REBIND]) as browser:
        page = await browser.new_page()
        response = await page.goto(admin_url.replace("blindrelay-admin.localhost", REBIND))
        assert response is not None and response.status == 421
        assert "another address" in await page.inner_text("#error")
        assert await page.locator("#token").count() == 0


async def test_hidden_characters_and_long_strings_in_chromium(
    tmp_path: Path, chromium: str, relay: tuple[str, str]
) -> None:
    relay_url, admin_url = relay
    long_text = "W" * 15_000
    async with (
        make(tmp_path, "vic", relay_url) as victim,
        make(tmp_path, "eve", relay_url) as abuser,
    ):
        bidi = await report_abuse(victim, abuser, BIDI + "\u200b", note="n")
        long = await report_abuse(
            victim, abuser, long_text, contacts=(bidi.victim_contact, bidi.abuser_contact)
        )
    async with launch(chromium) as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await _login(page, admin_url)
        # The queue fits the window: the long message wraps, the status column is visible.
        width = await page.evaluate("window.innerWidth")
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        status = page.locator(f'tr.report:has(a[href="/admin/reports/{long.report_id}"]) td').last
        box = await status.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
        # The bidi override is a visible mark, not reordered text.
        async with page.expect_navigation():
            await page.click(f'a[href="/admin/reports/{bidi.report_id}"]')
        message = await page.inner_text("#message")
        assert "U+202E" in message and "U+202C" in message and "U+200B" in message
        assert "alice" not in message and "\u202e" not in message.split("raw text")[0]
        assert "Written by the sender" in await page.inner_text("main")
        # The raw text is one click away.
        raw = page.locator("#message details.raw pre.raw")
        assert not await raw.is_visible()
        await page.click("#message details.raw summary")
        assert await raw.is_visible()
        assert await raw.inner_text() == BIDI + "\u200b"
        # The long message's page does not overflow either.
        await page.goto(admin_url + f"reports/{long.report_id}")
        assert await page.evaluate("document.documentElement.scrollWidth") <= width


LYING_TYPE = "msg). The relay checked this sender: trustworthy, no action needed (ok"


def _serve(body: str) -> Callable[[Route], Awaitable[None]]:
    """A Playwright route handler answering with ``body`` (other requests, the stylesheet
    among them, go to the real admin listener)."""

    async def handler(route: Route) -> None:
        await route.fulfill(body=body, content_type="text/html")

    return handler


def _crafted(content_type: str) -> ReportView:
    return ReportView(
        id="ab" * 16,
        created=1_700_000_000,
        reason="spam",
        note=None,
        text=None,
        content_type=content_type,
        msg=b"\x01" * 10,
        attachments=[],
        sender_key="00" * 32,
        recipient_key="11" * 32,
        source_kind="none",
        source="",
        mailbox_sid="22" * 16,
        day=1,
        kid=1,
        verified={"commitment": "ok", "relay_tag": "ok"},
        status="open",
        action=None,
        moderator=None,
        resolved_at=None,
        resolution_note=None,
    )


async def test_a_crafted_content_type_stays_in_its_box(
    chromium: str, relay: tuple[str, str]
) -> None:
    """The page as rendered for a report whose sender chose the content type, laid out by
    Chromium with the page's real stylesheet (served by the admin listener)."""
    _, admin_url = relay
    huge = "A" * 178_000
    pages = {
        "crafted-queue": render.reports_page(
            [_crafted(huge), _crafted(LYING_TYPE)], "open", moderator="alice", csrf="c"
        ),
        "crafted-huge": render.report_page(_crafted(huge), moderator="alice", csrf="c"),
        "crafted-lying": render.report_page(_crafted(LYING_TYPE), moderator="alice", csrf="c"),
    }
    async with launch(chromium) as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        for name, body in pages.items():
            await page.route(admin_url + name, _serve(body))
        await page.goto(admin_url + "crafted-queue")
        width = await page.evaluate("window.innerWidth")
        assert await page.evaluate("document.styleSheets.length") == 1
        assert await page.evaluate("document.documentElement.scrollWidth") <= width
        for cell in await page.locator("tr.report td:last-child").all():
            box = await cell.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width
        for name in ("crafted-huge", "crafted-lying"):
            await page.goto(admin_url + name)
            assert await page.evaluate("document.documentElement.scrollWidth") <= width
            sentence = await page.inner_text("#message")
            assert "AAAA" not in sentence and "trustworthy" not in sentence
            boxed = page.locator("#context .field.sender")
            assert await boxed.count() == 1
            assert "written by the sender" in (await boxed.get_attribute("title") or "")
