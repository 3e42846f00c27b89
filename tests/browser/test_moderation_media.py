"""A reported image in headless Chromium (issue 12, item 6): blurred until the moderator
clicks it, clear on the click, blurred again on a second one; loaded from the admin
listener under the report page's CSP (no violation); the other attachments (a PDF and a
scripted SVG) are downloads, never rendered.

The report is stored as the relay stores a verified one (``insert_report``): its
verification against the franking commitment is tested with real sessions in
``tests/integration/test_reports.py::test_reported_attachments_on_the_moderation_page``;
here the subject is what the browser does with the page.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from browserkit import Console, Page, launch, require_chromium
from reportkit import ADMIN_TOKENS, ALICE_TOKEN

from relay.admin import admin_listener_key
from relay.app import create_app
from relay.appkeys import store_key
from relay.config import RelayConfig
from relay.storage.records import AuditRecord, ReportRecord

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="document.title=\'pwned\'"></svg>'
PDF = b"%PDF-1.4\n% reported document\n"


def png(width: int, height: int, rgb: bytes) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + rgb * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.fixture
async def reported(tmp_path: Path) -> AsyncIterator[tuple[str, str, bytes]]:
    """(moderation page URL, report id, the image) with one open report revealing an image,
    a PDF and an SVG."""
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
        now = int(time.time())
        image = png(64, 48, b"\xff\x00\x00")
        rid = os.urandom(16)
        record = ReportRecord(
            id=rid,
            created=now,
            reason="harassment",
            note="an unwanted picture",
            msg=b"\x01" * 40,
            attachments=(image, PDF, SVG),
            sender_key=os.urandom(32),
            recipient_key=os.urandom(32),
            sid=os.urandom(16),
            kid=1,
            day=now // 86400,
            source_kind=1,
            source=os.urandom(32),
            verified_at=now,
        )
        audit = AuditRecord(ts=now, moderator="relay", action="report", report_id=rid, detail="")
        await server.app[store_key].insert_report(record, audit, max_per_day=20)
        yield admin, rid.hex(), image
    finally:
        await server.close()


async def _filter(page: Page) -> str:
    return str(
        await page.evaluate("getComputedStyle(document.getElementById('attachment-0')).filter")
    )


async def test_a_reported_image_is_blurred_until_clicked(
    chromium: str, reported: tuple[str, str, bytes]
) -> None:
    admin_url, rid, image = reported
    async with launch(chromium) as browser:
        context = await browser.new_context(accept_downloads=True)
        page = await context.new_page()
        console = Console(page)
        await page.goto(admin_url)
        await page.fill("#token", ALICE_TOKEN)
        async with page.expect_navigation():
            await page.click('#login button[type="submit"]')
        async with page.expect_navigation():
            await page.goto(admin_url.removesuffix("/admin/") + f"/admin/reports/{rid}")
        # The image loaded from the admin listener (the CSP allows 'self' images only).
        await page.wait_for_function(
            "document.getElementById('attachment-0').complete"
            " && document.getElementById('attachment-0').naturalWidth > 0"
        )
        size = await page.evaluate(
            "[document.getElementById('attachment-0').naturalWidth,"
            " document.getElementById('attachment-0').naturalHeight]"
        )
        assert size == [64, 48]
        assert "blur(24px)" in await _filter(page)
        blurred = await page.locator("#attachment-0").screenshot()
        await page.click('label[for="reveal-0"]')
        assert await _filter(page) == "none"
        clear = await page.locator("#attachment-0").screenshot()
        assert clear != blurred
        await page.click('label[for="reveal-0"]')
        assert "blur(24px)" in await _filter(page)
        # The others are downloads, with the bytes the reporter revealed; nothing renders.
        for i, data in ((1, PDF), (2, SVG)):
            async with page.expect_download() as info:
                await page.click(f"#attachment-{i}")
            download = await info.value
            assert download.suggested_filename == f"report-{rid[:12]}-attachment-{i}.bin"
            saved = await download.path()
            assert await asyncio.to_thread(Path(saved).read_bytes) == data
        assert await page.locator("img").count() == 1
        assert "pwned" not in await page.evaluate("document.title")
        assert not console.matching("Content Security Policy"), console.messages
        assert image not in (await page.content()).encode("latin-1", "replace")
