"""A minimal echo bot on clientlib's Client: prints its invitation link, accepts every
contact request and sends every message back.

    ECHO_BOT_PASSPHRASE=... python examples/echo_bot.py [--keystore FILE] [--relay URL]

The keystore is created on the first run (with the relay URL) and reopened afterwards; it
lives in the user's data directory, never in the current one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
from pathlib import Path

from clientlib.client import Client, MessageReceived, RequestReceived


def default_keystore() -> Path:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "blindrelay-echo-bot" / "echo-bot.keystore"


async def main() -> None:
    parser = argparse.ArgumentParser(description="blindrelay echo bot")
    parser.add_argument("--keystore", default=default_keystore(), type=Path)
    parser.add_argument(
        "--relay", default=os.environ.get("ECHO_BOT_RELAY", "http://127.0.0.1:7480")
    )
    args = parser.parse_args()
    secret = os.environ.get("ECHO_BOT_PASSPHRASE") or getpass.getpass("keystore passphrase: ")
    if args.keystore.exists():
        client = Client.open(args.keystore, secret)
    else:
        args.keystore.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        client = Client.create(args.keystore, secret, relay_url=args.relay, name="echo bot")
    async with client as bot:
        invitation = await bot.create_invitation()
        print(f"keystore: {args.keystore}", flush=True)
        print(f"invitation: {invitation.link}", flush=True)
        async for event in bot.events():
            if isinstance(event, RequestReceived):
                contact = await bot.accept_request(event.request)
                await bot.send(contact, "Hello! I send back everything you write.")
            elif isinstance(event, MessageReceived):
                await bot.send(event.contact, event.message.text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop quietly
        asyncio.run(main())
