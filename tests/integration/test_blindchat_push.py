"""blindchat ``push register URL`` / ``push unregister`` against a live relay process (SQLite,
``push_allow_private`` on) and a local HTTP receiver: Bob's message to offline Alice wakes
her endpoint with exactly her token; after ``push unregister`` it does not (protocol.md §28).
"""

from __future__ import annotations

import http.server
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import RelayProcess, free_port, is_banner
from test_blindchat import blindchat, ok, pair, with_repo_path
from test_blindchat import relay_log as relay_log  # noqa: PLC0414

from clientlib.chat.cli import EXIT_USAGE

POSTS: queue.Queue[tuple[str, bytes]] = queue.Queue()


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        POSTS.put((self.path, body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/up/alice"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    tmp = tmp_path_factory.mktemp("blindchat-push-relay")
    env = with_repo_path({k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")})
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    env["BLINDRELAY_PUSH_ALLOW_PRIVATE"] = "true"
    env["BLINDRELAY_PUSH_DELAY_MAX_S"] = "0.05"
    env["BLINDRELAY_PUSH_INTERVAL_S"] = "0"
    proc = RelayProcess(tmp / "data", env, tmp / "relay.log")
    proc.start()
    yield proc
    proc.stop()
    lines = "\n".join(ln for ln in proc.log_text().splitlines() if not is_banner(ln))
    assert "/up/alice" not in lines  # endpoints are never logged


@pytest.mark.slow  # about 10 CLI runs of ~1-4 s each on a loaded machine
def test_push_register_wakes_and_unregister_stops(
    tmp_path: Path, relay: RelayProcess, receiver: str
) -> None:
    alice, bob = pair(tmp_path, relay)
    done = blindchat(alice, "push", "register", receiver, "--token", "ab")
    assert done.returncode == EXIT_USAGE and "64 hex digits" in done.stderr, done.stderr
    tok = os.urandom(32)
    out = ok(alice, "push", "register", receiver, "--token", tok.hex())
    assert tok.hex() in out
    assert ok(bob, "send", "alice", "wake up") == "sent to alice\n"
    assert POSTS.get(timeout=10) == ("/up/alice", tok)
    # Bob's first run after her acceptance stores two envelopes for Alice (his conversation
    # settings, queued at the request, protocol.md §22.6, then the message); the second
    # wakes her again when the first wake-up already left the queue (push_interval_s is 0
    # here). Both are stored before his process exits: their wake-ups end within the delay.
    assert set(_drain()) <= {("/up/alice", tok)}
    assert ok(alice, "push", "unregister") == "push wake-ups are off\n"
    # §28.2: nothing is woken for an envelope stored after unpush answered ok.
    assert ok(bob, "send", "alice", "still there?") == "sent to alice\n"
    assert _drain() == []


def _drain(quiet_s: float = 1.0) -> list[tuple[str, bytes]]:
    """The wake-ups received until none came for ``quiet_s`` (20 push delays of this relay)."""
    got: list[tuple[str, bytes]] = []
    while True:
        try:
            got.append(POSTS.get(timeout=quiet_s))
        except queue.Empty:
            return got
