"""Live relay processes on either backend."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from liverelay import RelayProcess, is_banner


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def live_relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    if request.param == "redis":
        env["BLINDRELAY_STORAGE"] = "redis"
        env["BLINDRELAY_REDIS_URL"] = request.getfixturevalue("redis_url")
    elif request.param == "redis-cluster":
        env["BLINDRELAY_STORAGE"] = "redis"
        env["BLINDRELAY_REDIS_URL"] = request.getfixturevalue("redis_cluster_url")
        env["BLINDRELAY_REDIS_CLUSTER"] = "true"
        env["BLINDRELAY_REDIS_WAIT_REPLICAS"] = "1"
    relay = RelayProcess(tmp_path / "data", env, tmp_path / "relay.log")
    relay.start()
    yield relay
    relay.stop()
    # Nothing identifying ever reaches the relay's output.
    import relaydriver

    text = relay.log_text()
    # The relay's own listen address is printed at startup; no other line names an address.
    lines = [ln for ln in text.splitlines() if not is_banner(ln)]
    assert not re.search(r"\b127\.0\.0\.1\b", "\n".join(lines))
    for value in relaydriver.SEEN:
        assert value.hex() not in text


class RelayStorage:
    """Every byte a live relay stored, for scans: its data directory (SQLite database, -wal,
    -shm) or, on Redis, every key's name, ``DUMP`` and raw value plus the server's RDB/AOF
    files (made current with ``SAVE`` and ``BGREWRITEAOF`` first)."""

    def __init__(self, backend: str, relay: RelayProcess, redis_server: Any) -> None:
        self.backend = backend
        self.relay = relay
        #: A RedisServer, or the RedisClusterProcesses (every node is scanned: replicas hold
        #: the same bytes as their masters).
        self.redis_server = redis_server

    def dump(self) -> dict[str, bytes]:
        """``{source: bytes}``; the relay's log is included as ``"relay log"``."""
        out: dict[str, bytes] = {"relay log": self.relay.log_path.read_bytes()}
        for path in sorted(self.relay.data_dir.rglob("*")):
            if path.is_file():
                out[f"data dir: {path.name}"] = path.read_bytes()
        if self.backend == "redis-cluster":
            for node in self.redis_server.nodes:
                for name, blob in self._redis_dump(node.port, node.directory).items():
                    out[f"{name} ({node.port})"] = blob
        elif self.redis_server is not None:
            out.update(self._redis_dump(self.redis_server.port, self.redis_server.directory))
        return out

    @staticmethod
    def _redis_dump(port: int, directory: Path) -> dict[str, bytes]:
        import time

        import redis

        out: dict[str, bytes] = {}
        with redis.Redis(host="127.0.0.1", port=port, single_connection_client=True) as r:
            with contextlib.suppress(redis.ResponseError):
                r.execute_command("READONLY")  # a cluster replica answers reads itself
            keys: list[bytes] = []
            values: list[bytes] = []
            for key in r.scan_iter(count=1000):
                keys.append(key)
                dumped = r.dump(key)
                if dumped is not None:
                    values.append(dumped)
                kind = r.type(key)
                if kind == b"string":
                    values.append(r.get(key) or b"")
                elif kind == b"hash":
                    for f, v in r.hgetall(key).items():
                        values += [f, v]
                elif kind == b"list":
                    values += r.lrange(key, 0, -1)
                elif kind == b"set":
                    values += list(r.smembers(key))
                elif kind == b"zset":
                    values += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
            out["redis keys"] = b"\n".join(keys)
            out["redis values"] = b"\n".join(values)
            r.save()
            r.bgrewriteaof()
            deadline = time.monotonic() + 20
            while True:
                info = r.info("persistence")
                if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("BGREWRITEAOF did not finish")
                time.sleep(0.02)
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                out[f"redis dir: {path.name}"] = path.read_bytes()
        return out


@pytest.fixture
def relay_storage(request: pytest.FixtureRequest, live_relay: RelayProcess) -> RelayStorage:
    """What ``live_relay`` stored, on whichever backend it runs."""
    backend = request.node.callspec.params["live_relay"]
    server = None
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
    elif backend == "redis-cluster":
        server = request.getfixturevalue("redis_cluster")
    return RelayStorage(backend, live_relay, server)
