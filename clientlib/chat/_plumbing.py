"""What every ``blindchat`` command shares: the exit statuses, the command context, opening
the client, catching up, and the one line printed for an expected error (:func:`explain`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from clientlib.chat.text import clean, describe_warning
from clientlib.client import (
    BackupError,
    Client,
    ClientConfig,
    ClientWarning,
    CorruptHistory,
    InvalidInvitation,
    LinkError,
)
from clientlib.errors import (
    KeystoreError,
    KeyValidationError,
    LocalProtocolError,
    RelayRejected,
    TransportError,
)
from clientlib.keystore.errors import (
    CorruptKeystore,
    KeystoreExists,
    KeystoreLocked,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WeakPassphrase,
    WrongPassphrase,
)

# One exit-status scheme for blindchat and `blindrelay admin` (README "Exit status"; the
# values follow sysexits.h where one applies; tests/unit/clientlib/test_chat_exit_codes.py
# keeps them equal).
EXIT_OK = 0
#: The command ran and failed or was refused: no such contact, request or message; the relay
#: refused the request; not confirmed.
EXIT_FAILED = 1
#: A bad command line or argument (including a malformed invitation link).
EXIT_USAGE = 2
#: The relay could not be reached, or its TLS certificate could not be verified (EX_UNAVAILABLE).
EXIT_UNAVAILABLE = 69
EXIT_RELAY = EXIT_UNAVAILABLE
#: The local keystore or history cannot be used: missing, locked, wrong passphrase, damaged
#: (EX_IOERR).
EXIT_KEYSTORE = 74


#: blindchat is interactive: after an outage it is back within about this many seconds.
RECONNECT_CAP = 4.0


class CliError(Exception):
    """An expected failure: ``message`` goes to stderr, ``code`` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Ctx:
    home: Path
    keystore: Path
    prog: str  # how to call us again in hints ("blindchat --home ./alice")
    timeout: float
    offline: bool
    passphrase: str = ""
    proxy: str | None = None  # socks5://host:port (protocol.md §27.2)
    relay_url: str = ""
    offline_hint: bool = False
    #: Warnings seen while the command ran; kinds in ``quiet`` are recorded, not printed.
    warnings: list[ClientWarning] = field(default_factory=list)
    quiet: frozenset[str] = frozenset()


def out(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- client plumbing ----------------------------------------------------------------------


async def print_warnings(client: Client, ctx: Ctx) -> None:
    async for ev in client.events():
        if isinstance(ev, ClientWarning):
            ctx.warnings.append(ev)
            if ev.kind not in ctx.quiet:
                err(f"warning: {describe_warning(ev)}")


@contextlib.asynccontextmanager
async def open_client(ctx: Ctx, *, connect: bool, watch: bool = True) -> AsyncIterator[Client]:
    """Open the keystore; connect and subscribe if ``connect`` (and not ``--offline``)."""
    config = ClientConfig(connect=False, proxy=ctx.proxy, reconnect_cap=RECONNECT_CAP)
    client = Client.open(ctx.keystore, ctx.passphrase, config=config)
    async with client:
        ctx.relay_url = client.relay_url
        watcher: asyncio.Task[None] | None = None
        if watch:
            watcher = asyncio.get_running_loop().create_task(print_warnings(client, ctx))
        try:
            if connect and not ctx.offline:
                await client.connect()
            yield client
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def online(ctx: Ctx, command: str) -> None:
    if ctx.offline:
        raise CliError(EXIT_USAGE, f"`{command}` needs the relay; run it without --offline")


async def sync(client: Client, ctx: Ctx) -> bool:
    """Catch up with the relay and flush the outbox, for at most ``--timeout`` seconds."""
    if ctx.offline:
        return False
    try:
        async with asyncio.timeout(ctx.timeout):
            await client.sync()
    except TimeoutError:
        return False
    return True


async def catch_up(client: Client, ctx: Ctx) -> None:
    if not ctx.offline and not await sync(client, ctx):
        err(
            f"warning: the relay did not deliver everything within {ctx.timeout:g} s; "
            "this may be incomplete"
        )


# --- errors -------------------------------------------------------------------------------


def _tls_failure(exc: BaseException) -> str | None:
    """The reason, if a certificate verification failure is in ``exc``'s cause chain."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            inner = getattr(seen, "certificate_error", seen)  # aiohttp wraps the ssl error
            reason = getattr(inner, "verify_message", None)
            return clean(str(reason or "certificate verify failed"))
        if isinstance(seen, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def explain(exc: BaseException, ctx: Ctx) -> tuple[int, str]:
    """The exit status and the one line to print for an expected error."""
    relay = ctx.relay_url or "the relay"
    if isinstance(exc, CliError):
        return exc.code, exc.message
    if isinstance(exc, KeystoreNotFound):
        return EXIT_KEYSTORE, f"no keystore at {ctx.keystore}; run `{ctx.prog} init`"
    if isinstance(exc, KeystoreExists):
        return EXIT_KEYSTORE, f"a keystore already exists at {ctx.keystore}; refusing to overwrite"
    if isinstance(exc, KeystoreLocked):
        return (
            EXIT_KEYSTORE,
            "keystore is in use by another blindchat process (is `listen` running?)",
        )
    if isinstance(exc, WrongPassphrase):
        return EXIT_KEYSTORE, "wrong passphrase or damaged keystore"
    if isinstance(exc, UnsupportedKeystoreVersion):
        return (
            EXIT_KEYSTORE,
            "keystore was written by a newer version of blindchat; upgrade to open it",
        )
    if isinstance(exc, CorruptKeystore):
        return EXIT_KEYSTORE, f"damaged keystore at {ctx.keystore}: {exc}"
    if isinstance(exc, CorruptHistory):
        return EXIT_KEYSTORE, f"refusing to open the message history: {exc}"
    if isinstance(exc, WeakPassphrase):
        return EXIT_FAILED, f"{exc}. Nothing was changed; add --force to use it anyway"
    if isinstance(exc, KeystoreError):
        return EXIT_KEYSTORE, f"keystore error: {exc}"
    if isinstance(exc, LinkError):
        return EXIT_FAILED, f"{exc}"
    if isinstance(exc, BackupError):
        return EXIT_FAILED, f"{exc}; nothing was created"
    if isinstance(exc, InvalidInvitation):
        return EXIT_USAGE, f"not a valid invitation link: {exc}"
    if isinstance(exc, RelayRejected):
        return EXIT_FAILED, f"the relay at {relay} refused the request ({exc.code})"
    if isinstance(exc, TransportError):
        tls = _tls_failure(exc)
        if tls is not None:
            return EXIT_UNAVAILABLE, (
                f"cannot verify the TLS certificate of {relay} ({tls}); nothing was sent. "
                "Check the URL; an expired or self-signed certificate, or a proxy that "
                "intercepts TLS, also causes this"
            )
        hint = " (add --offline to use what is stored locally)" if ctx.offline_hint else ""
        return EXIT_UNAVAILABLE, f"relay unreachable at {relay}{hint}"
    if isinstance(exc, KeyValidationError):
        return EXIT_FAILED, "the relay handed out keys that do not check out; nothing was sent"
    if isinstance(exc, LocalProtocolError):
        return EXIT_FAILED, str(exc)
    return EXIT_FAILED, f"{type(exc).__name__}: {exc}"


def on_off_arg(text: str) -> bool:
    """An argparse type: on/yes/true/1 or off/no/false/0."""
    value = text.strip().lower()
    if value in ("on", "yes", "true", "1"):
        return True
    if value in ("off", "no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")
