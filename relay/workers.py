"""``blindrelay serve --workers N``: N relay processes on one listening socket, supervised.

The supervisor binds the listening socket once and starts N worker processes
(``python -m relay serve ... --worker-fd FD --worker-id I``) that inherit it: the kernel
hands each new connection to one of the workers waiting in ``accept``, so there is no load
balancer and no port per worker. A WebSocket stays on the worker that accepted it; a deposit
on one worker reaches an owner connected to another through the Redis wake-ups, as between
separate relay processes (protocol.md §9.1), which is why workers need the Redis backend
(SQLite has one writer per database and in-process wake-ups only).

The supervisor restarts a worker that exits or is killed (after a pause that grows while a
worker keeps dying within seconds of its start), and stops every worker on SIGTERM or
SIGINT (SIGTERM to each, SIGKILL after a grace period). A worker that cannot start because
of its configuration or storage (exit status 78 or 69 before it ever ran) stops the
supervisor with that status instead of being restarted in a loop. Each worker answers
``/healthz``, ``/readyz`` and ``/metrics`` with an ``X-Blindrelay-Worker`` header naming
itself; its metrics are its own process's counters (the stored-envelope gauge is the
deployment's).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from relay.config import RelayConfig
from relay.errors import ConfigError

__all__ = ["MAX_WORKERS", "check_workers", "supervise"]

MAX_WORKERS: Final = 64
#: A worker that ran at least this long before dying is restarted at once.
STABLE_S: Final = 5.0
#: Longest pause before restarting a worker that keeps dying soon after its start.
MAX_BACKOFF_S: Final = 5.0
#: How long workers get to stop after SIGTERM before SIGKILL.
STOP_GRACE_S: Final = 10.0
POLL_S: Final = 0.1

EX_UNAVAILABLE: Final = 69
EX_CONFIG: Final = 78


def check_workers(config: RelayConfig, workers: int) -> None:
    """Refuse a worker count the configuration cannot serve.

    Raises:
        ConfigError: fewer than 1 or more than :data:`MAX_WORKERS`, or more than one on the
            SQLite backend.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: must be from 1 to {MAX_WORKERS}")
    if workers > 1 and config.storage != "redis":
        raise ConfigError(
            "--workers: more than one worker needs storage = redis (SQLite has a single"
            " writer and wakes only the connections of its own process)"
        )


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive early deaths
    ever_ran: bool = False
    restart_at: float = 0.0


def _listen(config: RelayConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.create_server((config.host, config.port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def supervise(config: RelayConfig, workers: int, argv: Sequence[str]) -> int:
    """Bind, start ``workers`` workers with ``argv`` (the ``serve`` arguments without
    ``--workers``), restart them when they die, and stop them all on SIGTERM/SIGINT.

    Returns:
        the exit status: 0 after a requested stop, or the status of a worker that could not
        start (69 storage unavailable, 78 configuration).
    """
    try:
        sock = _listen(config)
    except OSError as exc:
        print(f"blindrelay: cannot listen: {exc.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE
    port = sock.getsockname()[1]
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pool = [_Worker(i) for i in range(workers)]
    print(
        f"blindrelay supervisor: {workers} workers listening on http://{config.host}:{port}",
        flush=True,
    )
    status = 0
    try:
        while not stopping:
            now = time.monotonic()
            for worker in pool:
                if worker.proc is None:
                    if now >= worker.restart_at:
                        _start(worker, sock, port, argv)
                    continue
                code = worker.proc.poll()
                if code is None:
                    if not worker.ever_ran and now - worker.started >= STABLE_S:
                        worker.ever_ran = True
                    continue
                worker.proc = None
                ran = now - worker.started
                if not worker.ever_ran and code in (EX_CONFIG, EX_UNAVAILABLE):
                    print(
                        f"blindrelay supervisor: worker {worker.index} could not start"
                        f" (exit status {code}); stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    status = code
                    stopping = True
                    break
                worker.failures = 0 if ran >= STABLE_S else worker.failures + 1
                pause = min(MAX_BACKOFF_S, 0.1 * 2**worker.failures) if worker.failures else 0.0
                worker.restart_at = now + pause
                how = f"signal {-code}" if code < 0 else f"exit status {code}"
                print(
                    f"blindrelay supervisor: worker {worker.index} ended ({how}); restarting",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(POLL_S)
    finally:
        _stop_all(pool)
        sock.close()
    return status


def _start(worker: _Worker, sock: socket.socket, port: int, argv: Sequence[str]) -> None:
    fd = sock.fileno()
    cmd = [
        sys.executable,
        "-m",
        "relay",
        "serve",
        *argv,
        "--port",
        str(port),
        "--worker-fd",
        str(fd),
        "--worker-id",
        str(worker.index),
    ]
    worker.proc = subprocess.Popen(cmd, pass_fds=(fd,))  # noqa: S603 (our own argv)
    worker.started = time.monotonic()


def _stop_all(pool: list[_Worker]) -> None:
    running = [w.proc for w in pool if w.proc is not None and w.proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("blindrelay supervisor: stopped", file=sys.stderr, flush=True)


def worker_socket(fd: int) -> socket.socket:
    """The listening socket a worker inherited from the supervisor."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock
