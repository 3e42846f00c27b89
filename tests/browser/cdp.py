"""A minimal Chrome DevTools Protocol driver: headless Chromium over aiohttp's WebSocket client.

Just what a page test needs, and nothing that reaches beyond this machine::

    async with Browser.launch(tmp_path) as browser:
        page = await browser.page()
        await page.goto("http://127.0.0.1:7481/admin/login")
        await page.fill("#token", token)
        await page.submit("#login")              # waits for the next page to load
        assert "Open reports" in await page.text("h2")

Chromium runs with ``--remote-debugging-port=0`` and writes the port it picked to
``<user-data-dir>/DevToolsActivePort`` (first line the port, second the browser endpoint's
path). We connect to that browser endpoint once and attach to the page target with
``Target.attachToTarget(flatten=True)``, so every page command travels over the same socket
tagged with its ``sessionId``. Commands are matched to replies by ``id``; events are kept so a
test can wait for one that was announced before it started waiting (``Page.loadEventFired``
after a click).

Chromium is started so that it talks to nobody: no background networking, no component
updates, no sync, no pings, and every host name except the loopback addresses resolves to
nothing (``--host-resolver-rules``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Browser", "CDPError", "Page", "find_chromium"]

START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 20.0
LOAD_TIMEOUT_S = 20.0

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
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
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


class CDPError(RuntimeError):
    """Chromium answered a command with an error, or a page did not behave as expected."""


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


class _Connection:
    """One WebSocket to the browser endpoint; replies by id, events by (session, method)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[tuple[str | None, str, dict[str, Any]]] = []
        self._event_arrived = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                else:
                    async with self._event_arrived:
                        self._events.append(
                            (data.get("sessionId"), data["method"], data.get("params", {}))
                        )
                        self._event_arrived.notify_all()
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("the DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        payload: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session is not None:
            payload["sessionId"] = session
        await self._ws.send_str(json.dumps(payload))
        reply = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def mark(self) -> int:
        """A position in the event log: :meth:`wait_event` looks only at later events."""
        return len(self._events)

    async def wait_event(
        self, method: str, session: str | None, since: int, timeout: float
    ) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            async with self._event_arrived:
                while True:
                    for sid, name, params in self._events[since:]:
                        if name == method and sid == session:
                            return params
                    await self._event_arrived.wait()

        return await asyncio.wait_for(find(), timeout)

    def events(self, method: str, session: str | None) -> list[dict[str, Any]]:
        return [p for sid, name, p in self._events if name == method and sid == session]

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Page:
    """One tab. Selectors are CSS selectors, passed to ``document.querySelector``."""

    def __init__(self, conn: _Connection, session: str) -> None:
        self._conn = conn
        self._session = session

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._conn.send(method, params, self._session)

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        mark = self._conn.mark()
        result = await self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"navigation failed: {result['errorText']}")
        await self._conn.wait_event("Page.loadEventFired", self._session, mark, LOAD_TIMEOUT_S)

    async def evaluate(self, expression: str) -> Any:
        """Run ``expression`` in the page and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CDPError(f"evaluation failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def url(self) -> str:
        return str(await self.evaluate("location.href"))

    async def html(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML"))

    async def text(self, selector: str = "body") -> str:
        """The rendered text of the first element matching ``selector`` (CDPError if none)."""
        value = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " return el === null ? null : el.innerText; })()"
        )
        if value is None:
            raise CDPError(f"no element matches {selector!r}")
        return str(value)

    async def count(self, selector: str) -> int:
        return int(await self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    async def fill(self, selector: str, value: str) -> None:
        """Set a text input's or textarea's value, as typing would."""
        ok = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (el === null) return false;"
            f" el.focus(); el.value = {json.dumps(value)};"
            " el.dispatchEvent(new Event('input', {bubbles: true})); return true; })()"
        )
        if not ok:
            raise CDPError(f"no input matches {selector!r}")

    async def check(self, selector: str) -> None:
        """Select a radio button or tick a checkbox (by clicking it)."""
        ok = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (el === null) return false; el.click(); return el.checked; })()"
        )
        if not ok:
            raise CDPError(f"cannot check {selector!r}")

    async def click(self, selector: str, *, navigates: bool = True) -> None:
        """Click an element (a link or a submit button); by default wait for the next page."""
        mark = self._conn.mark()
        ok = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (el === null) return false; el.click(); return true; })()"
        )
        if not ok:
            raise CDPError(f"no element matches {selector!r}")
        if navigates:
            await self._conn.wait_event("Page.loadEventFired", self._session, mark, LOAD_TIMEOUT_S)

    async def submit(self, form_selector: str) -> None:
        """Submit a form with its own submit button (as a user would) and wait for the result."""
        mark = self._conn.mark()
        ok = await self.evaluate(
            f"(() => {{ const f = document.querySelector({json.dumps(form_selector)});"
            " if (f === null) return false; f.requestSubmit(); return true; })()"
        )
        if not ok:
            raise CDPError(f"no form matches {form_selector!r}")
        await self._conn.wait_event("Page.loadEventFired", self._session, mark, LOAD_TIMEOUT_S)

    async def cookies(self) -> list[dict[str, Any]]:
        result = await self.send("Network.getCookies")
        cookies: list[dict[str, Any]] = result["cookies"]
        return cookies

    def console_messages(self) -> list[str]:
        """Console and browser log entries seen so far (CSP violations show up here)."""
        out = [
            " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            for p in self._conn.events("Runtime.consoleAPICalled", self._session)
        ]
        out += [
            str(p["entry"].get("text", ""))
            for p in self._conn.events("Log.entryAdded", self._session)
        ]
        return out


class Browser:
    """A headless Chromium process and the DevTools connection to it."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        http: aiohttp.ClientSession,
        conn: _Connection,
        profile: Path,
    ) -> None:
        self._proc = proc
        self._http = http
        self._conn = conn
        self.profile = profile

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, workdir: Path, binary: str | None = None) -> AsyncIterator[Browser]:
        """Start Chromium with a fresh profile under ``workdir``; stop it on exit.

        Raises:
            CDPError: no Chromium binary, or it did not open its DevTools endpoint.
        """
        binary = binary or find_chromium()
        if binary is None:
            raise CDPError("no chromium binary found")
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a stale one from before
        log_path = workdir / "chromium.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its helper processes are stopped with it
            )
        http = aiohttp.ClientSession()
        browser: Browser | None = None
        try:
            endpoint = await _devtools_endpoint(proc, profile, log_path)
            ws = await http.ws_connect(endpoint, max_msg_size=64 << 20)
            browser = cls(proc, http, _Connection(ws), profile)
            yield browser
        finally:
            if browser is not None:
                with contextlib.suppress(Exception):
                    await browser._conn.send("Browser.close")
                await browser._conn.close()
            await http.close()
            await _stop(proc)

    async def page(self) -> Page:
        """Attach to the open tab and enable the page, runtime, log and network domains."""
        targets = (await self._conn.send("Target.getTargets"))["targetInfos"]
        pages = [t for t in targets if t["type"] == "page"]
        if pages:
            target = pages[0]["targetId"]
        else:
            target = (await self._conn.send("Target.createTarget", {"url": "about:blank"}))[
                "targetId"
            ]
        session = (
            await self._conn.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        )["sessionId"]
        page = Page(self._conn, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.send(f"{domain}.enable")
        return page


async def _devtools_endpoint(proc: asyncio.subprocess.Process, profile: Path, log: Path) -> str:
    port_file = profile / "DevToolsActivePort"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if proc.returncode is not None:
            tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:]
            raise CDPError(f"chromium exited with status {proc.returncode}: {tail}")
        with contextlib.suppress(OSError):
            lines = (await asyncio.to_thread(port_file.read_text)).splitlines()
            if len(lines) >= 2 and lines[0].strip().isdigit():
                return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        await asyncio.sleep(0.05)
    raise CDPError("chromium did not open its DevTools endpoint")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Stop Chromium and its helper processes (its own process group)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser
