"""A real Redis Cluster for tests and benches: N masters with one replica each.

Every node is a ``redis-server --cluster-enabled yes`` child process on a free port with its
own directory (durable: ``appendonly yes``, ``appendfsync always``); the cluster is formed
with ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``. A short
``cluster-node-timeout`` makes a failover take about a second, so tests can kill a master and
watch its replica take over.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

#: Configuration every test server gets on top of its own arguments (tests/conftest.py too).
DURABLE_ARGS = ("--appendonly", "yes", "--appendfsync", "always")
#: Milliseconds before a silent node is considered failing (the failover delay).
NODE_TIMEOUT_MS = 1000
START_TIMEOUT_S = 30.0


def free_port_pair() -> int:
    """A free port whose Redis Cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 55_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


class ClusterNode:
    """One ``redis-server`` of the cluster."""

    def __init__(self, binary: str, directory: Path, port: int, args: tuple[str, ...]) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
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
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ping(self, deadline: float) -> None:
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server (cluster node) exited during startup")
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cluster node did not answer PING")
            time.sleep(0.02)

    def stop(self, *, kill: bool = False) -> None:
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

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class RedisClusterProcesses:
    """``masters`` masters and as many replicas, formed into one cluster."""

    def __init__(
        self, binary: str, directory: Path, masters: int = 3, args: tuple[str, ...] = DURABLE_ARGS
    ) -> None:
        self.directory = directory
        self.nodes = [
            ClusterNode(binary, directory / f"node-{i}", free_port_pair(), args)
            for i in range(masters * 2)
        ]
        self.masters = masters

    @property
    def url(self) -> str:
        """A seed URL (any node will do: the client discovers the rest)."""
        return f"redis://{self.nodes[0].address}/0"

    def start(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in self.nodes:
            node.start()
        try:
            for node in self.nodes:
                node.wait_ping(deadline)
            cli = shutil.which("redis-cli")
            if cli is None:
                raise RuntimeError("redis-cli not found (needed to form the cluster)")
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(n.address for n in self.nodes),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=START_TIMEOUT_S,
            )
            self.wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise

    def wait_healthy(self, deadline: float | None = None) -> None:
        """Wait until every running node says ``cluster_state:ok``, every replica's link to
        its master is up and, when every node runs, there are ``masters`` masters (a master
        that comes back after a failover first claims its role, then becomes a replica)."""
        deadline = deadline or time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                running = [n for n in self.nodes if n.running]
                if all(self._node_ok(n) for n in running) and (
                    len(running) < len(self.nodes) or len(self.primaries()) == self.masters
                ):
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not become healthy")
            time.sleep(0.05)

    @staticmethod
    def _node_ok(node: ClusterNode) -> bool:
        with node.client() as c:
            if c.cluster("info").get("cluster_state") != "ok":
                return False
            repl = c.info("replication")
            if repl["role"] == "master":
                return True
            return bool(repl.get("master_link_status") == "up")

    def primaries(self) -> list[ClusterNode]:
        """The running nodes that are masters now."""
        out = []
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as c:
                if c.info("replication")["role"] == "master":
                    out.append(node)
        return out

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        """The running replica of ``master``."""
        for node in self.nodes:
            if node is master or not node.running:
                continue
            with node.client() as c:
                repl = c.info("replication")
                if repl["role"] == "slave" and int(repl["master_port"]) == master.port:
                    return node
        raise LookupError("master has no running replica")

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for node in self.primaries():
            with node.client() as c:
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start_cluster(directory: Path, masters: int = 3) -> RedisClusterProcesses:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found")
    cluster = RedisClusterProcesses(binary, directory, masters)
    cluster.start()
    return cluster
