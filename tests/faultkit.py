"""Helpers of the fault tests (``tests/faults``, issue 19): mailboxes, envelopes and metrics
of a live relay, through :mod:`relaydriver`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
from liverelay import RelayProcess
from relaydriver import HTTPClient, Owner

CT = "application/x-blindrelay"


def bucket(size: int = 256) -> bytes:
    """A ciphertext of one envelope bucket (random bytes)."""
    return os.urandom(size)


async def new_mailbox(http: HTTPClient, owner: Owner) -> tuple[bytes, bytes]:
    """A new open mailbox of ``owner``: ``(rid, sid)``."""
    return await http.create_mailbox(owner)


async def fetch_all(http: HTTPClient, owner: Owner, rid: bytes) -> list[bytes]:
    """Every eid stored in ``rid`` in order, read page by page; each page is acked (deleted)
    by the next fetch, so the mailbox is empty afterwards."""
    found: list[bytes] = []
    ack: list[int] | None = None
    while True:
        page = await http.fetch(owner, rid, max=256, ack=ack)
        found.extend(e.eid for e in page.envs)
        if not page.envs:
            return found
        ack = [e.seq for e in page.envs]


async def metric(
    session: aiohttp.ClientSession, relay: RelayProcess, family: str, labels: str = ""
) -> float:
    """The value of one sample of ``/metrics`` (0 when absent)."""
    async with session.get(relay.url + "metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(family) and labels in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def fill(directory: Path, *, keep: int = 0) -> Path:
    """Fill the filesystem of ``directory`` with one file until at most ``keep`` bytes are
    free (or a write fails); returns the file (delete it to give the space back)."""
    ballast = directory / "ballast"
    chunk = b"\0" * (1 << 20)
    with ballast.open("ab") as f:
        while True:
            free = shutil.disk_usage(directory).free
            if free <= keep:
                break
            try:
                f.write(chunk[: min(len(chunk), free - keep)])
                f.flush()
            except OSError:
                break
    return ballast


def grow(directory: Path, mib: int) -> None:
    """Give the tmpfs mounted at ``directory`` (``small_fs``) ``mib`` MiB (a remount)."""
    done = subprocess.run(
        ["mount", "-o", f"remount,size={mib}m", str(directory)], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
