"""blindchat commands for account security: ``passphrase``, ``duress set``, ``duress clear``,
``backup PATH`` and ``restore PATH``. Registered by :func:`register` from
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
from clientlib.keystore.file import _test_kdf_allowed

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


async def cmd_backup(ctx: Any, args: argparse.Namespace) -> int:

    path = args.path
    async with _open(ctx, connect=False) as client:
        try:
            words = await client.backup(path)
        except FileExistsError:
            raise CliError(EXIT_USAGE, f"{path} exists; a backup never overwrites a file") from None
        n = sum(1 for c in client.contacts() if c.state == "accepted")
    w = words.split()
    _out(
        f"backup written: {path} (identity, {n} contacts, settings; no messages)",
        "",
        "recovery key (shown once, never stored; without it the backup cannot be opened):",
        "",
        *(
            "   " + "  ".join(f"{i + j + 1:2}. {w[i + j]:<9}" for j in range(6))
            for i in (0, 6, 12, 18)
        ),
        "",
        f"restore on a new machine with: blindchat restore {path}",
    )
    return EXIT_OK


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


async def cmd_restore(ctx: Any, args: argparse.Namespace) -> int:
    from clientlib.client import Client, ClientConfig

    words = os.environ.get("BLINDCHAT_RECOVERY_WORDS")
    if words is None and args.recovery_file is not None:
        try:
            words = _read_text(args.recovery_file)
        except (OSError, UnicodeDecodeError):
            raise CliError(
                EXIT_USAGE, f"cannot read the recovery file {args.recovery_file}"
            ) from None
    if words is None:
        if not sys.stdin.isatty():
            raise CliError(
                EXIT_USAGE,
                "no recovery words: set $BLINDCHAT_RECOVERY_WORDS or use --recovery-file",
            )
        words = getpass.getpass("recovery words (24, separated by spaces): ")
    ctx.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    client = Client.restore(
        args.path,
        words,
        ctx.keystore,
        ctx.passphrase,
        config=ClientConfig(kdf_strength=args.kdf, connect=False),
        allow_weak_passphrase=args.force,
    )
    async with client:
        n = len(client.contacts())
        relay = client.relay_url
    _out(
        f"restored keystore: {ctx.keystore} ({n} contacts, relay {relay})",
        "each contact is offered a new session the next time blindchat is online (for",
        "example `listen`); they see 'safety number unchanged, new session'. Messages sent",
        "to the old session meanwhile cannot be read.",
    )
    return EXIT_OK


cmd_restore.creates_keystore = True  # type: ignore[attr-defined]


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

    p = add("backup", cmd_backup, "write an encrypted backup; shows its recovery words once")
    p.add_argument("path", metavar="PATH", help="a new file (never overwritten)")
    p = add("restore", cmd_restore, "create this home's keystore from a backup")
    p.add_argument("path", metavar="PATH", help="the backup file")
    p.add_argument(
        "--recovery-file",
        metavar="FILE",
        help="read the 24 words from FILE (default: $BLINDCHAT_RECOVERY_WORDS, else a prompt)",
    )
    p.add_argument(
        "--kdf",
        choices=("interactive", "moderate") + (("minimum",) if _test_kdf_allowed() else ()),
        default="moderate",
        help="Argon2id cost of the new keystore (default: moderate)",
    )
    p.add_argument("--force", action="store_true", help="accept a passphrase rated weak")


async def _duress_usage(ctx: Any, args: argparse.Namespace) -> int:
    raise CliError(EXIT_USAGE, "usage: duress set [--wipe] | duress clear")
