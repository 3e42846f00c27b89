"""Shared helpers for tests that drive real ``clientlib.Client``s: create one with a fast
keystore KDF, wait for an event, and make two clients contacts through a relay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from clientlib.client import Client, ClientConfig, ContactAdded, RequestReceived

E = TypeVar("E")
#: Argon2id at its minimum: keystore files behave the same, tests stay fast.
FAST = ClientConfig(kdf_strength="minimum")


def make(tmp_path: Path, name: str, relay: str, **options: Any) -> Client:
    """A new client ``name`` with its keystore in ``tmp_path`` (passphrase ``pw-<name> long test passphrase``);
    ``options``: :class:`ClientConfig` fields that differ from :data:`FAST`."""
    return Client.create(
        tmp_path / f"{name}.keystore",
        b"pw-" + name.encode() + b" long test passphrase",
        relay_url=relay,
        name=name,
        config=replace(FAST, **options),
    )


async def wait_for(
    client: Client, cls: type[E], pred: Callable[[E], bool] = lambda e: True, timeout: float = 15
) -> E:
    """The next event of type ``cls`` satisfying ``pred`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        async for ev in client.events():
            if isinstance(ev, cls) and pred(ev):
                return ev
    raise AssertionError("the client closed before the event arrived")


async def befriend(owner: Client, requester: Client, *, intro: str = "hi") -> tuple[str, str]:
    """``requester`` asks for ``owner``'s invitation and ``owner`` accepts.

    Returns:
        (owner's id for the requester, the requester's id for the owner).
    """
    inv = await owner.create_invitation()
    pending = await requester.send_request(inv.link, intro=intro)
    assert pending.state == "pending"
    req = await wait_for(owner, RequestReceived)
    assert req.request.intro == intro
    assert req.request.safety_number == pending.safety_number
    contact = await owner.accept_request(req.request)
    added = await wait_for(requester, ContactAdded)
    assert added.contact.state == "accepted"
    assert contact.safety_number == added.contact.safety_number
    return contact.id, added.contact.id
