"""The client signs ahead (protocol.md §15.5.5 "Precomputation"): an AMF signature is
prepared for a contact when it is added, when a message from it arrives and after every
send, so that a send only finishes one. Through real clients and a live relay, the messages
sent with prepared signatures are shown by the recipient and their reports verify."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestServer
from clientkit import befriend, make, wait_for

from clientlib.client import Client, MessageReceived
from relay.app import create_app
from relay.appkeys import service_key
from relay.config import RelayConfig


async def ready(client: Client, cid: str) -> object:
    async with asyncio.timeout(10):
        while (p := client._ops._prepared.get(bytes.fromhex(cid))) is None:
            await asyncio.sleep(0.01)
    return p


async def test_sends_use_signatures_prepared_ahead_and_stay_reportable(
    tmp_path: Path, relay_config: RelayConfig
) -> None:
    server = TestServer(create_app(relay_config), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/"))
        async with make(tmp_path, "vic", url) as victim, make(tmp_path, "abe", url) as sender:
            v_s, s_v = await befriend(victim, sender)
            for i in range(3):
                prepared = await ready(sender, s_v)  # made off the send path
                await sender.send(s_v, f"message {i}")
                assert prepared.used  # type: ignore[attr-defined]
                got = await wait_for(
                    victim, MessageReceived, lambda e, i=i: e.message.text == f"message {i}"
                )
            assert await ready(victim, v_s) is not None  # a reply is likely: ready too
            report_id = await victim.report(got.message, "spam")
            view = await server.app[service_key].moderation.get_report(report_id)
            assert view is not None and view.text == "message 2"
            assert view.verified["sender"].startswith("AMF signature verified")
            await victim.remove_contact(v_s)
            assert bytes.fromhex(v_s) not in victim._ops._prepared
    finally:
        await server.close()
