"""Several relay processes over one Redis: a deposit on one wakes the owner on another."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from liverelay import RelayProcess
from relaydriver import HTTPClient, Owner, WSClient

from clientlib.wire import FLAG_ONLINE_ONLY, Drained, EnvelopeDelivered

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", "redis-cluster"])
def backend_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """One Redis, or a real Redis Cluster (sharded pub/sub, writes wait for a replica)."""
    if request.param == "redis":
        return {"BLINDRELAY_REDIS_URL": request.getfixturevalue("redis_url")}
    return {
        "BLINDRELAY_REDIS_URL": request.getfixturevalue("redis_cluster_url"),
        "BLINDRELAY_REDIS_CLUSTER": "true",
        "BLINDRELAY_REDIS_WAIT_REPLICAS": "1",
    }


def spawn(tmp_path: Path, name: str, backend: dict[str, str] | str) -> RelayProcess:
    """A relay process on Redis: ``backend`` is a Redis URL or :func:`backend_env`'s
    settings (test_local_lb.py passes a URL)."""
    if isinstance(backend, str):
        backend = {"BLINDRELAY_REDIS_URL": backend}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env.update(BLINDRELAY_STORAGE="redis", BLINDRELAY_LOG_FORMAT="json", **backend)
    relay = RelayProcess(tmp_path / name, env, tmp_path / f"{name}.log")
    relay.start()
    return relay


async def test_cross_process_push(tmp_path: Path, backend_env: dict[str, str]) -> None:
    a, b = spawn(tmp_path, "a", backend_env), spawn(tmp_path, "b", backend_env)
    owner = Owner()
    try:
        async with aiohttp.ClientSession() as session:
            http_b = HTTPClient(session, b.url)
            async with WSClient(session, a.url) as ows:
                rid, sid = await ows.create_mailbox(owner)
                await http_b.deposit(sid, bytes(256))  # stored via process B while offline
                await ows.subscribe(owner, rid)  # owner on process A
                first = await ows.next_push()
                assert isinstance(first, EnvelopeDelivered)
                assert isinstance(await ows.next_push(), Drained)
                await ows.ack(rid, [first.env.seq])
                for i in range(50):  # live deposits on B are pushed by A
                    await http_b.deposit(sid, bytes([i]) * 512)
                got = []
                while len(got) < 50:
                    frame = await ows.next_push()
                    assert isinstance(frame, EnvelopeDelivered)
                    got.append(frame.env.ct[0])
                    await ows.ack(rid, [frame.env.seq])
                assert got == list(range(50))
                # Online-only envelopes cross processes too, and are not stored.
                await http_b.deposit(sid, b"\x77" * 256, flags=FLAG_ONLINE_ONLY)
                typing = await ows.next_push()
                assert isinstance(typing, EnvelopeDelivered) and typing.env.seq == 0
                # Deleting on B ends the subscription on A.
                await http_b.delete(owner, rid)
            assert (await HTTPClient(session, a.url).post("/v1/deposit", b""))[0] == 400
    finally:
        a.stop()
        b.stop()
