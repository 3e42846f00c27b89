"""Live relay processes: ``python -m relay serve`` in a subprocess, on either backend."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RelayProcess:
    def __init__(self, data_dir: Path, env: dict[str, str], log_path: Path) -> None:
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
            if "listening on" in self.log_path.read_text(errors="replace"):
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


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def live_relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RelayProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    if request.param == "redis":
        env["BLINDRELAY_STORAGE"] = "redis"
        env["BLINDRELAY_REDIS_URL"] = request.getfixturevalue("redis_url")
    relay = RelayProcess(tmp_path / "data", env, tmp_path / "relay.log")
    relay.start()
    yield relay
    relay.stop()
    # Nothing identifying ever reaches the relay's output.
    import relaydriver

    text = relay.log_text()
    # The relay's own listen address is printed at startup; no other line names an address.
    lines = [
        ln for ln in text.splitlines() if "listening on" not in ln and "relay_started" not in ln
    ]
    assert not re.search(r"\b127\.0\.0\.1\b", "\n".join(lines))
    for value in relaydriver.SEEN:
        assert value.hex() not in text
