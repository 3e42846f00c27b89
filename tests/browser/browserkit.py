"""Headless Chromium for the browser tests: Playwright for Python driving the system binary.

Playwright never downloads a browser here: it is told the binary (``executable_path``, found
by :func:`find_chromium`), and ``.ci/run`` installs Debian's ``chromium`` and sets
``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1``; ``playwright install`` is never run.

Chromium is started so that it talks to nobody: no background networking, no component
updates, no sync, and every host name resolves to nothing except the loopback names
(``localhost``, ``*.localhost``, ``127.0.0.1``) and the names a test maps to 127.0.0.1 on
purpose (``extra_hosts``: a DNS-rebinding name, for example).

Without a Chromium binary a test using :func:`launch` is skipped, but when ``CI`` is set it
fails instead, so a CI image cannot silently lose the browser coverage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

__all__ = ["Browser", "BrowserContext", "Page", "find_chromium", "launch", "require_chromium"]

FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    "--metrics-recording-only",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions,"
    "CertificateTransparencyComponentUpdater,AutofillServerCommunication,PrivacySandboxSettings4",
)


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROME_BIN``, else ``chromium`` / ``chromium-browser`` /
    ``google-chrome`` on PATH."""
    explicit = os.environ.get("CHROME_BIN")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The binary, or skip the test (fail it under ``CI``)."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium binary, and CI is set (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium binary (apt-get install chromium)")
    return binary


def _resolver_rules(extra_hosts: Sequence[str]) -> str:
    rules = [f"MAP {name} 127.0.0.1" for name in extra_hosts]
    rules += ["MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE *.localhost", "EXCLUDE 127.0.0.1"]
    return "--host-resolver-rules=" + ", ".join(rules)


@contextlib.asynccontextmanager
async def launch(binary: str, *, extra_hosts: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """Start headless Chromium (``binary``) under Playwright; stop it on exit."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=binary,
            headless=True,
            args=[*FLAGS, _resolver_rules(extra_hosts)],
            timeout=30_000,
        )
        try:
            yield browser
        finally:
            await browser.close()


class Console:
    """Console and browser log messages of a page (CSP violations show up here)."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", lambda msg: self.messages.append(msg.text))
        page.on("pageerror", lambda exc: self.messages.append(str(exc)))

    def matching(self, needle: str) -> list[str]:
        return [m for m in self.messages if needle in m]
