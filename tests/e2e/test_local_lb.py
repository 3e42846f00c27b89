"""README "Redis mode": two relay processes over one Redis behind one URL
(deploy/local-lb.Caddyfile, Caddy from Debian's package). Two clients that only know the
load balancer's URL befriend each other and chat, while their requests and WebSockets are
spread over both processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from clientkit import befriend, make, wait_for
from liverelay import ROOT, free_port
from test_scale_out import spawn

from clientlib.client import MessageReceived

pytestmark = pytest.mark.redis

CADDY = shutil.which("caddy")


def start_caddy(port: int, a: str, b: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LB_PORT": str(port), "RELAY_A": a, "RELAY_B": b}
    env["XDG_CONFIG_HOME"] = env["XDG_DATA_HOME"] = str(log.parent)  # no autosave in $HOME
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["caddy", "run", "--adapter", "caddyfile", "--config", "deploy/local-lb.Caddyfile"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("caddy did not start: " + log.read_text())


@pytest.mark.skipif(CADDY is None and not os.environ.get("CI"), reason="caddy not installed")
async def test_two_relays_behind_one_url(tmp_path: Path, redis_url: str) -> None:
    assert CADDY is not None, "CI installs caddy (.ci/run)"
    a, b = spawn(tmp_path, "a", redis_url), spawn(tmp_path, "b", redis_url)
    port = free_port()
    lb = start_caddy(port, f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}", tmp_path / "lb.log")
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s, s.get(url + "/v1/info") as r:
            assert r.status == 200
        async with make(tmp_path, "alice", url) as alice, make(tmp_path, "bob", url) as bob:
            a_bob, b_alice = await befriend(alice, bob)
            for i in range(4):
                await bob.send(b_alice, f"hello {i}")
                got = await wait_for(alice, MessageReceived)
                assert got.message.text == f"hello {i}"
            await alice.send(a_bob, "and back")
            assert (await wait_for(bob, MessageReceived)).message.text == "and back"
        # Both processes served requests (round robin over one URL).
        for relay in (a, b):
            assert '"request_handled"' in relay.log_text() or "connection_opened" in (
                relay.log_text()
            )
    finally:
        lb.terminate()
        lb.wait(10)
        a.stop()
        b.stop()
