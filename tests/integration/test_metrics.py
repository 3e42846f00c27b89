"""``GET /metrics``: the Prometheus exposition an operator scrapes (prometheus_client).

Parsed with prometheus_client's own parser, so a malformed exposition fails here. Every
family has HELP and TYPE, no two families share a name, the content type names the 0.0.4
text format, and the operator metrics move when the relay works: deposit and push latency
histograms, the push queue depth, storage errors by kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from relaydriver import HTTPClient, Owner, RelayRejectedError, WSClient

from clientlib.wire import Drained, EnvelopeDelivered
from relay.app import create_app
from relay.config import RelayConfig
from relay.metrics import COUNTERS, HISTOGRAMS

RedisServerFactory = Callable[..., Any]  # tests/conftest.py: factory(*args, durable=True)


async def scrape(session: aiohttp.ClientSession, relay: str) -> tuple[str, dict[str, Any]]:
    async with session.get(relay + "metrics") as r:
        assert r.status == 200
        text = await r.text()
        content_type = r.headers["Content-Type"]
    return content_type, {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == name and s.labels == labels:
            return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


async def test_exposition_is_complete_and_moves(
    relay: str, session: aiohttp.ClientSession, owner: Owner
) -> None:
    http = HTTPClient(session, relay)
    rid, sid = await http.create_mailbox(owner)
    async with WSClient(session, relay) as ws:
        await ws.subscribe(owner, rid)
        await http.deposit(sid, os.urandom(256))
        while not isinstance(await ws.next_push(), EnvelopeDelivered):
            pass
        content_type, families = await scrape(session, relay)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    text = "\n".join(f"{f.name} {f.type} {f.documentation}" for f in families.values())
    for family in families.values():
        assert family.name.startswith("blindrelay_"), family.name
        assert family.documentation, f"{family.name} has no HELP"
    # Every declared family is exposed (with HELP) even before it first counts.
    for name, _help, _label in COUNTERS.values():
        assert f"blindrelay_{name}" in families, text
    for name, _help in HISTOGRAMS.values():
        assert families[f"blindrelay_{name}"].type == "histogram"
    assert families["blindrelay_connections"].type == "gauge"
    assert families["blindrelay_connections_opened"].type == "counter"
    assert sample(families, "blindrelay_connections", "blindrelay_connections") == 1
    assert sample(families, "blindrelay_deposit_seconds", "blindrelay_deposit_seconds_count") == 1
    assert sample(families, "blindrelay_push_seconds", "blindrelay_push_seconds_count") == 1
    # The wake-up of the stored envelope reached the subscriber's connection in this process.
    lag = "blindrelay_wakeup_lag_seconds"
    assert families[lag].type == "histogram"
    assert sample(families, lag, lag + "_count", via="local") == 1
    assert sample(families, lag, lag + "_count", via="pubsub") == 0
    assert 0 <= sample(families, lag, lag + "_sum", via="local") < 5
    # Pushed but not acknowledged: still stored.
    [stored] = families["blindrelay_stored_envelopes"].samples
    assert stored.value == 1 and stored.labels["backend"] in ("sqlite", "redis")
    # The socket closed: nothing is left queued, no connection is open.
    _, families = await scrape(session, relay)
    assert sample(families, "blindrelay_push_queue_frames", "blindrelay_push_queue_frames") == 0
    assert sample(families, "blindrelay_connections", "blindrelay_connections") == 0
    assert sid.hex() not in text and rid.hex() not in text


@pytest.mark.redis
async def test_wakeup_lag_across_processes_through_redis(
    redis_url: str, make_relay: Any, tmp_path: Path, session: aiohttp.ClientSession, owner: Owner
) -> None:
    """Two relay applications over one Redis: a deposit on one wakes the owner subscribed on
    the other through pub/sub, and the subscriber's process records the lag (``pubsub``)."""
    config = replace(
        RelayConfig(storage="redis", data_dir=str(tmp_path), purge_interval_s=3600),
        redis_url=redis_url,
    )
    front, _ = await make_relay(config)
    back, _ = await make_relay(replace(config, data_dir=str(tmp_path / "b")))
    rid, sid = await HTTPClient(session, front).create_mailbox(owner)
    async with WSClient(session, back) as ws:
        await ws.subscribe(owner, rid)
        while not isinstance(await ws.next_push(), Drained):
            pass
        lag = "blindrelay_wakeup_lag_seconds"
        await HTTPClient(session, front).deposit(sid, os.urandom(256))
        while not isinstance(await ws.next_push(), EnvelopeDelivered):
            pass
        _, got = await scrape(session, back)
        assert sample(got, lag, lag + "_count", via="pubsub") == 1
        assert sample(got, lag, lag + "_count", via="local") == 0
        assert 0 <= sample(got, lag, lag + "_sum", via="pubsub") < 5
        _, stored_on = await scrape(session, front)
        assert sample(stored_on, lag, lag + "_count", via="pubsub") == 0


@pytest.mark.redis
async def test_storage_errors_are_counted_by_kind(
    redis_server_factory: RedisServerFactory,
    tmp_path: Path,
    session: aiohttp.ClientSession,
    owner: Owner,
) -> None:
    redis = redis_server_factory()
    config = replace(
        RelayConfig(storage="redis", data_dir=str(tmp_path), purge_interval_s=3600),
        redis_url=redis.url,
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        relay = str(server.make_url("/"))
        http = HTTPClient(session, relay)
        _, sid = await http.create_mailbox(owner)
        redis.stop()  # a real outage
        with pytest.raises(RelayRejectedError) as refused:
            await http.deposit(sid, os.urandom(256))
        assert refused.value.code == "UNAVAILABLE"
        _, families = await scrape(session, relay)
        assert (
            sample(
                families,
                "blindrelay_storage_errors",
                "blindrelay_storage_errors_total",
                kind="unavailable",
            )
            == 1
        )
        assert "blindrelay_stored_envelopes" not in families or not (
            families["blindrelay_stored_envelopes"].samples
        )
        assert (
            sample(families, "blindrelay_deposit_seconds", "blindrelay_deposit_seconds_count") == 1
        )
    finally:
        await server.close()
