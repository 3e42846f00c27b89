"""A live relay process: ``python -m relay serve`` in a subprocess (used by e2e tests and benches)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


#: ``pytestmark = WITH_CLUSTER`` runs a module's ``live_relay`` tests on a Redis Cluster too.
WITH_CLUSTER = pytest.mark.parametrize(
    "live_relay",
    [
        "sqlite",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ],
    indirect=True,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_listening(log_text: str) -> bool:
    """Whether a relay's output has its listening banner (plain text, or the JSON event)."""
    return "listening on" in log_text or '"relay_listening"' in log_text


def is_banner(line: str) -> bool:
    """A startup line that names the relay's own listen address (the only lines that may)."""
    return any(
        mark in line
        for mark in ("listening on", '"relay_listening"', '"admin_listening"', "relay_started")
    )


class ChildProcess:
    """A child process with a log file: stopped with SIGTERM (then SIGKILL after 10 s)."""

    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class RelayProcess(ChildProcess):
    def __init__(
        self, data_dir: Path, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.args = args  # more ``serve`` arguments (``--workers 2``)
        self.data_dir = data_dir
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "relay exited: " + self.log_path.read_text(errors="replace")[-2000:]
                )
            if is_listening(self.log_path.read_text(errors="replace")):
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("relay did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None


def start_relay(tmp_path: Path, name: str, **env_extra: str) -> RelayProcess:
    """A started SQLite relay process with its data in ``tmp_path / name`` (JSON logs)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    env.update(env_extra)
    relay = RelayProcess(tmp_path / name, env, tmp_path / f"{name}.log")
    relay.start()
    return relay
