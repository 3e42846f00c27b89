"""Reports on a live relay (both backends): only what was reported becomes readable.

Two real clients exchange messages through a live relay process; the recipient reports one of
them. Every byte the relay then holds (database files or Redis keys and persistence files,
and its log) contains the reported message, verified, and none of the unreported ones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clientkit import befriend, make, wait_for
from liverelay import WITH_CLUSTER, RelayProcess

from clientlib.client import MessageReceived

#: Also on a real Redis Cluster (3 masters, 3 replicas; every byte of every node scanned).
pytestmark = WITH_CLUSTER


async def test_only_the_reported_message_becomes_readable(
    live_relay: RelayProcess, relay_storage: Any, tmp_path: Path
) -> None:
    token = os.urandom(8).hex()
    texts = [f"unreported-{token}-{i}" for i in range(3)]
    abusive = f"reported-{token}"
    async with (
        make(tmp_path, "vic", live_relay.url) as victim,
        make(tmp_path, "abe", live_relay.url) as abuser,
    ):
        _, a_v = await befriend(victim, abuser)
        for text in [texts[0], abusive, texts[1], texts[2]]:
            await abuser.send(a_v, text)
        received = [(await wait_for(victim, MessageReceived)).message for _ in range(4)]
        assert [m.text for m in received] == [texts[0], abusive, texts[1], texts[2]]
        await victim.sync()
        report_id = await victim.report(received[1], "harassment", note=f"note-{token}")
        assert len(bytes.fromhex(report_id)) == 16
        blobs = relay_storage.dump()
    stored = b"".join(blobs.values())
    assert abusive.encode() in stored  # the verified report is in the moderation queue
    for text in texts:
        assert text.encode() not in stored, f"an unreported message is readable: {text}"
        assert text.encode().hex().encode() not in stored
    assert f"note-{token}".encode() in stored
    log = blobs["relay log"]
    assert abusive.encode() not in log and token.encode() not in log  # never logged
