"""blindchat commands for linked devices (protocol.md §24.5-§24.7): ``devices``,
``devices link``, ``devices approve CODE``, ``devices remove ID``. Registered by
:func:`register` from :func:`clientlib.chat.cli.build_parser`.

``devices link`` runs on the new machine (it creates this home's keystore, so it asks for
a new passphrase); ``devices approve`` on a device that already holds the identity. The
6-digit code both show must be the same: ``approve`` asks for the code the new device shows
(or takes ``--sas``) and sends nothing if it differs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from clientlib.chat._plumbing import EXIT_OK, EXIT_USAGE, CliError
from clientlib.chat._plumbing import online as _online
from clientlib.chat._plumbing import open_client as _open
from clientlib.chat._plumbing import out as _out
from clientlib.chat._plumbing import sync as _sync

__all__ = ["register"]


async def cmd_devices(ctx: Any, args: argparse.Namespace) -> int:

    async with _open(ctx, connect=False) as client:
        devs = client.devices()
    from clientlib.client import MAX_DEVICES

    _out(f"{len(devs)} of at most {MAX_DEVICES} devices:")
    for d in devs:
        mark = "  (this device)" if d.this_device else ""
        _out(f"  {d.id[:8]}  {d.name}{mark}")
    return EXIT_OK


async def cmd_devices_link(ctx: Any, args: argparse.Namespace) -> int:
    from clientlib.chat.qr import render_qr
    from clientlib.client import Client, ClientConfig

    relay = args.relay.strip().rstrip("/")
    cfg = ClientConfig(kdf_strength=args.kdf, connect=False)
    ctx.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with Client.link_device(relay, config=cfg) as linker:
        _out(
            "on a device that already has your identity, run:",
            "",
            f"  blindchat devices approve {linker.code}",
            "",
            render_qr(linker.qr_payload),
            "waiting for the approving device (the code is valid for 10 minutes) ...",
        )
        sas = await linker.wait_for_approver()
        _out(f"code: {sas[:3]} {sas[3:]}  - approve on the other device only if it shows the same")
        client = await linker.finish(ctx.keystore, ctx.passphrase, allow_weak_passphrase=args.force)
    async with client:
        ctx.relay_url = client.relay_url
        n = len(client.contacts())
        if not ctx.offline:
            await client.connect()
            await _sync(client, ctx)
        linked = [d for d in client.devices() if d.this_device]
    _out(
        f"linked: this is device {linked[0].id[:8]} of your identity ({n} contacts).",
        "each contact is offered a session with this device; messages from them reach it",
        "once they answer (run `listen`).",
    )
    return EXIT_OK


async def cmd_devices_approve(ctx: Any, args: argparse.Namespace) -> int:

    _online(ctx, "devices approve")
    async with _open(ctx, connect=True) as client:
        approval = await client.start_device_approval(args.code)
        _out(f"code: {approval.sas[:3]} {approval.sas[3:]}")
        sas = args.sas
        if sas is None:
            _out("type the code the new device shows (Enter alone: cancel):")
            line = await asyncio.to_thread(sys.stdin.readline)
            sas = line.strip()
            if not sas:
                raise CliError(EXIT_USAGE, "cancelled: nothing was sent to the new device")
        dev = await client.approve_device(approval, sas, name=args.name or "new device")
        await _sync(client, ctx)
    _out(f"approved: device {dev.id[:8]} ({dev.name}) now shares your identity")
    return EXIT_OK


async def cmd_devices_remove(ctx: Any, args: argparse.Namespace) -> int:

    _online(ctx, "devices remove")
    async with _open(ctx, connect=True) as client:
        matches = [d for d in client.devices() if d.id.startswith(args.device.strip().lower())]
        if len(matches) != 1 or len(args.device.strip()) < 4:
            raise CliError(EXIT_USAGE, "no such device (use 4+ hex digits from `devices`)")
        dev = await client.remove_device(matches[0].id)
        await _sync(client, ctx)
    _out(f"removed device {dev.id[:8]} ({dev.name}): contacts stop delivering to it")
    return EXIT_OK


cmd_devices_link.creates_keystore = True  # type: ignore[attr-defined]


async def _usage(ctx: Any, args: argparse.Namespace) -> int:
    return await cmd_devices(ctx, args)


def register(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add this module's commands to blindchat's parser (``add`` as in ``build_parser``)."""
    from clientlib.chat.cli import DEFAULT_RELAY
    from clientlib.keystore.file import _test_kdf_allowed

    p = add("devices", _usage, "list, link, approve or remove your devices")
    dsub = p.add_subparsers(title="actions", metavar="ACTION")
    q = add("link", cmd_devices_link, "make this machine a new device (shows a code)", dsub)
    q.add_argument("--relay", default=DEFAULT_RELAY, help=f"relay URL (default {DEFAULT_RELAY})")
    q.add_argument(
        "--kdf",
        choices=("interactive", "moderate") + (("minimum",) if _test_kdf_allowed() else ()),
        default="moderate",
        help=argparse.SUPPRESS,
    )
    q.add_argument("--force", action="store_true", help="accept a passphrase rated weak")
    q = add("approve", cmd_devices_approve, "approve a new device's link code", dsub)
    q.add_argument("code", metavar="CODE", help="the brlink1: code the new device shows")
    q.add_argument(
        "--sas",
        metavar="DIGITS",
        help="the 6-digit code the new device shows (default: asked for after `code:`)",
    )
    q.add_argument("--name", metavar="NAME", help="a name for the new device")
    q = add("remove", cmd_devices_remove, "remove one of your devices", dsub)
    q.add_argument("device", metavar="ID", help="its id (prefix) from `devices`")
