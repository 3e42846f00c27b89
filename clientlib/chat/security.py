"""blindchat commands for account security: ``passphrase``, ``duress set``, ``duress clear``
(and later ``devices``, ``backup``, ``restore``). Registered by :func:`register` from
:func:`clientlib.chat.cli.build_parser`.

A new passphrase comes from ``$BLINDCHAT_NEW_PASSPHRASE``, else ``--new-passphrase-file``,
else two prompts; a duress passphrase from ``$BLINDCHAT_DURESS_PASSPHRASE``, else
``--duress-passphrase-file``, else two prompts. None is ever printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clientlib.chat._plumbing import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError
from clientlib.chat._plumbing import open_client as _open
from clientlib.chat._plumbing import out as _out

__all__ = ["register"]


def _secret(
    env: str, file: str | None, prompt: str, *, what: str
) -> str:  # pragma: no cover - exercised through main()
    value = os.environ.get(env)
    if value is None and file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError):
            raise CliError(EXIT_USAGE, f"cannot read the {what} file {file}") from None
    if value is None:
        if not sys.stdin.isatty():
            raise CliError(
                EXIT_USAGE,
                f"no {what}: set ${env} or use the --{what.replace(' ', '-')}-file option",
            )
        value = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt}, again: ") != value:
            raise CliError(EXIT_USAGE, f"the two {what}s differ; nothing was changed")
    if not value:
        raise CliError(EXIT_USAGE, f"the {what} is empty")
    return value


async def cmd_passphrase(ctx: Any, args: argparse.Namespace) -> int:
    new = _secret(
        "BLINDCHAT_NEW_PASSPHRASE",
        args.new_passphrase_file,
        "new passphrase",
        what="new passphrase",
    )
    async with _open(ctx, connect=False) as client:
        try:
            await client.change_passphrase(new, kdf_strength=args.kdf, allow_weak=args.force)
        except ValueError as exc:
            raise CliError(EXIT_FAILED, f"{exc}; nothing was changed") from None
    cost = f" (Argon2id cost: {args.kdf})" if args.kdf else ""
    _out(f"passphrase changed{cost}: the keystore is re-encrypted under the new one")
    if args.kdf:
        _out("a duress passphrase, if one was set, was removed with the old cost: set it again")
    return EXIT_OK


async def cmd_duress_set(ctx: Any, args: argparse.Namespace) -> int:
    secret = _secret(
        "BLINDCHAT_DURESS_PASSPHRASE",
        args.duress_passphrase_file,
        "duress passphrase",
        what="duress passphrase",
    )
    async with _open(ctx, connect=False) as client:
        try:
            await client.set_duress(
                secret, wipe=args.wipe, decoy_name=args.decoy_name or "", allow_weak=args.force
            )
        except ValueError as exc:
            raise CliError(EXIT_FAILED, f"{exc}; nothing was changed") from None
    if args.wipe:
        _out(
            "duress passphrase set: opening with it DESTROYS this keystore and its history",
            "and leaves an empty identity in their place. There is no undo.",
        )
    else:
        _out(
            "duress passphrase set: opening with it shows a decoy (an empty identity on the",
            "same relay); this keystore stays untouched and opens with your passphrase.",
        )
    return EXIT_OK


async def cmd_duress_clear(ctx: Any, args: argparse.Namespace) -> int:
    async with _open(ctx, connect=False) as client:
        await client.clear_duress()
    _out("duress passphrase removed")
    return EXIT_OK


def register(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Add this module's commands to blindchat's parser (``add`` as in ``build_parser``)."""
    p = add("passphrase", cmd_passphrase, "change the keystore passphrase (re-encrypts it)")
    p.add_argument(
        "--new-passphrase-file",
        metavar="FILE",
        help="read it from FILE (default: $BLINDCHAT_NEW_PASSPHRASE, else a prompt)",
    )
    p.add_argument(
        "--kdf",
        choices=("interactive", "moderate"),
        help="also move the keystore to this Argon2id cost (default: keep it)",
    )
    p.add_argument("--force", action="store_true", help="accept a passphrase rated weak")

    p = add("duress", _duress_usage, "set or clear a duress passphrase")
    dsub = p.add_subparsers(title="actions", metavar="ACTION")
    q = add("set", cmd_duress_set, "set a passphrase that opens a decoy (or wipes)", dsub)
    q.add_argument(
        "--duress-passphrase-file",
        metavar="FILE",
        help="read it from FILE (default: $BLINDCHAT_DURESS_PASSPHRASE, else a prompt)",
    )
    q.add_argument(
        "--wipe",
        action="store_true",
        help="opening with it destroys the real keystore instead of only showing the decoy",
    )
    q.add_argument("--decoy-name", metavar="NAME", help="the decoy's display name")
    q.add_argument("--force", action="store_true", help="accept a passphrase rated weak")
    add("clear", cmd_duress_clear, "remove the duress passphrase", dsub)


async def _duress_usage(ctx: Any, args: argparse.Namespace) -> int:
    raise CliError(EXIT_USAGE, "usage: duress set [--wipe] | duress clear")
