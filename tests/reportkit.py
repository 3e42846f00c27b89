"""Genuine abuse reports for the moderation tests: two real ``clientlib.Client``s befriend
through a relay, one sends, the other reports what it received (protocol.md §4.11)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.abc
from clientkit import FAST, befriend, make, wait_for

from clientlib.client import Client, MessageReceived

__all__ = [
    "FAST",
    "AdminSession",
    "LoopbackResolver",
    "Reported",
    "admin_http",
    "befriend",
    "make",
    "report_abuse",
    "wait_for",
]
from clientlib.transport import HTTPTransport

#: Tokens for the moderation tests: 32+ random-looking characters, as the config requires
#: (a repeated letter is refused as guessable).
ALICE_TOKEN = "alice-Iaj25mi6Ihpoa8R0xy3bucRCLxOGisdJRSJdmkko"
BOB_TOKEN = "bob-Ay27nAueHniL6D3qKRD8CvlhlcqhYP8Q2KLloT24"
ADMIN_TOKENS = f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}"


@dataclass
class Reported:
    """A report filed by ``victim`` about a message from ``abuser``."""

    report_id: str
    victim: Client
    abuser: Client
    victim_contact: str  # the victim's id for the abuser
    abuser_contact: str  # the abuser's id for the victim


async def report_abuse(
    victim: Client,
    abuser: Client,
    text: str,
    *,
    reason: str = "harassment",
    note: str | None = None,
    contacts: tuple[str, str] | None = None,
) -> Reported:
    """``abuser`` sends ``text`` to ``victim`` (befriending them first unless ``contacts``
    is given), and ``victim`` reports it."""
    v_a, a_v = contacts or await befriend(victim, abuser)
    await abuser.send(a_v, text)
    got = await wait_for(victim, MessageReceived, lambda e: e.message.text == text)
    report_id = await victim.report(got.message, reason, note=note)
    return Reported(report_id, victim, abuser, v_a, a_v)


async def deposit_as_abuser(reported: Reported) -> Any:
    """One more envelope from the abuser to the victim's mailbox, deposited directly with the
    abuser's send capability, so the test sees the relay's own answer."""
    c = reported.abuser._book.contacts[bytes.fromhex(reported.abuser_contact)]
    assert c.send is not None and c.sendcap is not None
    async with aiohttp.ClientSession() as s:
        http = HTTPTransport(s, reported.abuser.relay_url)
        return await http.deposit(c.send, os.urandom(256), eid=os.urandom(16), cap=c.sendcap)


class LoopbackResolver(aiohttp.abc.AbstractResolver):
    """``*.localhost`` to 127.0.0.1, as browsers resolve it (glibc here does not)."""

    def __init__(self) -> None:
        self._fallback = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        if host == "localhost" or host.endswith(".localhost"):
            return [
                {
                    "hostname": host,
                    "host": "127.0.0.1",
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        return await self._fallback.resolve(host, port, family)

    async def close(self) -> None:
        await self._fallback.close()


def admin_http() -> aiohttp.ClientSession:
    """A client session that reaches the moderation page by its ``*.localhost`` name."""
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(resolver=LoopbackResolver()),
    )


class AdminSession:
    """A moderator's plain-HTTP session with the moderation page (cookie jar, CSRF)."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base.rstrip("/")
        self.http = http
        self.csrf = ""

    @classmethod
    def open(cls, base: str) -> tuple[AdminSession, aiohttp.ClientSession]:
        http = admin_http()
        return cls(base, http), http

    async def get(self, path: str, **kw: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as r:
            body = await r.text()
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
        if found:
            self.csrf = found.group(1)
        return r.status, body, r

    async def post(
        self, path: str, data: dict[str, str], **kw: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.post(self.base + path, data=data, allow_redirects=False, **kw) as r:
            body = await r.text()
        return r.status, body, r

    async def login(self, token: str) -> tuple[int, str, aiohttp.ClientResponse]:
        await self.get("/admin/login")
        return await self.post("/admin/login", {"csrf": self.csrf, "token": token})
