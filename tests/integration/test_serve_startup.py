"""``blindrelay serve`` as a process: startup refusals, their exit codes and messages.

deploy/ documents 78 (EX_CONFIG) as "restarting cannot help" (systemd
``RestartPreventExitStatus=78``): a non-durable Redis and a second process on one SQLite
database must exit 78 with a message that says what to do; relaxed durability must start
and say what it risks. Every test starts its own relay and redis-server on free ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from liverelay import ROOT, RelayProcess, free_port

RedisServerFactory = Callable[..., Any]  # tests/conftest.py: factory(*args, durable=True)


def relay_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    env.update({f"BLINDRELAY_{k.upper()}": v for k, v in settings.items()})
    return env


def data_arg(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir)]


def serve_once(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``serve`` expecting it to refuse: it must exit on its own, quickly."""
    return subprocess.run(
        [sys.executable, "-m", "relay", "serve", "--port", str(free_port()), *data_arg(data_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.redis
def test_non_durable_redis_exits_78(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    for args in (("--appendonly", "no"), ("--appendonly", "yes", "--appendfsync", "no")):
        server = redis_server_factory(*args, durable=False)
        done = serve_once(relay_env(storage="redis", redis_url=server.url), tmp_path)
        assert done.returncode == 78, done.stderr
        assert "refusing to start" in done.stderr and "not durable" in done.stderr
        assert "127.0.0.1" not in done.stderr  # the Redis URL is never printed


@pytest.mark.redis
def test_everysec_is_refused_strict_and_warned_relaxed(
    redis_server_factory: RedisServerFactory, tmp_path: Path
) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "everysec", durable=False)
    strict = serve_once(relay_env(storage="redis", redis_url=server.url), tmp_path)
    assert strict.returncode == 78 and "everysec" in strict.stderr
    env = relay_env(storage="redis", redis_url=server.url, redis_durability="relaxed")
    relay = RelayProcess(tmp_path / "data", env, tmp_path / "relay.log")
    relay.start()
    try:
        events = [json.loads(ln) for ln in relay.log_text().splitlines()]
    finally:
        relay.stop()
    warned = [e for e in events if e["event"] == "storage_durability_relaxed"]
    assert len(warned) == 1 and warned[0]["level"] == "warning"
    assert "everysec" in warned[0]["problems"][0]
    assert any(e["event"] == "relay_listening" for e in events)


def test_second_serve_on_one_sqlite_database_is_refused(tmp_path: Path) -> None:
    first = RelayProcess(tmp_path / "data", relay_env(), tmp_path / "first.log")
    first.start()
    try:
        second = serve_once(relay_env(), tmp_path / "data")
        assert second.returncode == 78, second.stderr
        assert "another blindrelay process is serving the SQLite database" in second.stderr
        assert "one process per database" in second.stderr
        # The admin CLI still works beside the running relay (it takes no lock).
        admin = subprocess.run(
            [
                sys.executable,
                "-m",
                "relay",
                "admin",
                "reports",
                "list",
                *data_arg(tmp_path / "data"),
            ],
            env=relay_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert admin.returncode == 0, admin.stderr
    finally:
        first.stop()
    # The lock goes with the process: a new relay starts on the same database.
    again = RelayProcess(tmp_path / "data", relay_env(), tmp_path / "again.log")
    again.start()
    again.stop()


def test_json_logs_make_every_stdout_line_json(tmp_path: Path) -> None:
    relay = RelayProcess(tmp_path / "data", relay_env(), tmp_path / "relay.log")
    relay.start()
    relay.stop()
    events = [json.loads(ln) for ln in relay.log_text().splitlines()]
    listening = [e for e in events if e["event"] == "relay_listening"]
    assert listening[0]["listen"] == f"http://127.0.0.1:{relay.port}"
    assert listening[0]["backend"] == "sqlite"
