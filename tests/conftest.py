"""Shared fixtures: real ``redis-server`` processes on free ports (never the machine's Redis).

Tests that need Redis use ``redis_url`` (a session server with ``appendonly yes`` and
``appendfsync always``, flushed before each test) or ``redis_server_factory`` (extra servers
for restart and fault tests). Without a ``redis-server`` binary those tests are skipped, but
when ``CI`` is set they fail instead, so a CI image cannot silently lose Redis coverage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings

# Every Hypothesis test (unit, property, conformance) runs without a per-example deadline:
# CI machines are shared and a slow example is not a failure. The property suite's conftest
# adds its own example counts on top.
settings.register_profile("blindrelay", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("blindrelay")

#: Argon2id at its minimum cost for the tests' keystores (and their subprocesses): a private,
#: test-only switch of clientlib.keystore.file, never offered by the public API.
os.environ["CLIENTLIB_INSECURE_TEST_KDF"] = "1"

from rediscluster import DURABLE_ARGS  # noqa: E402

REDIS_SERVER = shutil.which("redis-server")
#: Configuration every test server gets on top of its own arguments.
START_TIMEOUT_S = 10.0


def _require_redis_binary() -> str:
    if REDIS_SERVER is None:
        if os.environ.get("CI"):
            raise RuntimeError("redis-server binary not found, and CI is set")
        pytest.skip("redis-server binary not found")
    return REDIS_SERVER


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` child process with its own port and data directory."""

    def __init__(self, binary: str, directory: Path, args: tuple[str, ...]) -> None:
        self.binary = binary
        self.directory = directory
        self.args = args
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (same port and directory as before) and wait for PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--daemonize",
                "no",
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited during startup")
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
                    if client.ping():
                        return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGKILL (a crash) if ``kill``, else SIGTERM."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()


RedisServerFactory = Callable[..., RedisServer]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A durable redis-server for the whole session."""
    binary = _require_redis_binary()
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"), DURABLE_ARGS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session redis-server, flushed before the test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """Start extra redis-servers: ``factory(*args, durable=True)``; all stopped at teardown."""
    binary = _require_redis_binary()
    servers: list[RedisServer] = []

    def factory(*args: str, durable: bool = True) -> RedisServer:
        all_args = (*DURABLE_ARGS, *args) if durable else args
        server = RedisServer(binary, tmp_path / f"redis-{len(servers)}", all_args)
        servers.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A durable Redis Cluster (3 masters, 3 replicas) for the whole session
    (:mod:`rediscluster`)."""
    _require_redis_binary()
    from rediscluster import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: Any) -> str:
    """Seed URL of the session Redis Cluster, every master flushed before the test."""
    if not all(node.running for node in redis_cluster.nodes):
        raise RuntimeError("a test left the session cluster with a node down")
    redis_cluster.flush()
    return str(redis_cluster.url)


# The quick loop (`pytest -m "not slow"`, README "Tests") leaves out what starts many processes
# or waits by design: every end-to-end, browser, fuzz and fault-injection test, blindchat run as a subprocess,
# the Redis Cluster tests, the stateful property suite, the relay-subprocess and timeout
# modules below, the integration tests on the Redis backend (the contract suite still runs
# every store test on both backends) and a few single tests that take seconds each.
# They all still run in the default (CI) run; tests marked slow one by one are left out too.
_SLOW_TIERS = ("tests/e2e/", "tests/browser/", "tests/fuzz/", "tests/faults/")
_SLOW_FILES = (
    "tests/contract/test_cluster.py",
    "tests/property/test_session_stateful.py",
    "tests/integration/test_slow_clients.py",  # timeouts of seconds, by design
    "tests/integration/test_serve_startup.py",  # relay subprocesses
    "tests/integration/test_admin_cli.py",  # relay and admin subprocesses
    "tests/unit/test_layering.py",  # fresh interpreters importing the packages
)
_SLOW_TESTS = frozenset(
    {
        "tests/unit/clientlib/test_amf.py::test_every_single_bit_flip_fails",
        "tests/unit/relay/test_amf_judge.py::test_every_single_bit_flip_is_refused",
        "tests/contract/test_blobs.py::test_processes_share_the_directory",
        # These wait by design: the receipt delay's maximum, an expiry, a link transfer,
        # the absence of a push.
        "tests/integration/test_conversation.py::test_receipts_never_when_switched_off",
        "tests/integration/test_conversation.py::test_disappearing_messages_vanish_from_both_histories",
        "tests/integration/test_client_devices.py::test_link_fan_out_sync_and_removal",
        "tests/integration/test_push.py::test_no_wakeup_after_unregister_or_delete",
        "tests/integration/test_blob_resume.py::test_cut_uploads_resume_to_the_exact_bytes",
        "tests/unit/clientlib/test_history_shred.py::test_many_expiries_compact_by_themselves",
        "tests/integration/test_limits_table.py::test_forwards_in_progress_and_one_forwards_time",
    }
)
_ROOT = Path(__file__).resolve().parents[1]
_BLINDCHAT = "tests/integration/test_blindchat"  # blindchat run as a subprocess


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With exactly ``-m "not slow"``, do not even import the slow tiers and files (their
    imports -- Playwright, schemathesis, Hypothesis strategies, subprocess harnesses -- cost
    seconds of the quick loop); every other run collects them as usual."""
    if config.getoption("markexpr", "") != "not slow":
        return None
    try:
        rel = collection_path.resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return None
    if (rel + "/").startswith(_SLOW_TIERS) or rel in _SLOW_FILES or rel.startswith(_BLINDCHAT):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        blindchat = path.startswith(_BLINDCHAT)
        redis_integration = (
            path.startswith("tests/integration/") and item.get_closest_marker("redis") is not None
        )
        if (
            path.startswith(_SLOW_TIERS)
            or path in _SLOW_FILES
            or item.nodeid.split("[", 1)[0] in _SLOW_TESTS
            or blindchat
            or redis_integration
            or "cluster" in item.nodeid
        ):
            item.add_marker(pytest.mark.slow)
