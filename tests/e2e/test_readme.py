"""README.md as a newcomer runs it (issue 22): the Quickstart's commands verbatim in a fresh
copy of the repository and a new virtual environment; the Python snippet and the echo bot
twice each, stopped with Ctrl-C; the Redis section's commands never touch the system Redis.

The Quickstart test installs the package and its dependencies from the package index into a
new venv, so it takes about a minute: marked slow, run by default.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import ROOT, RelayProcess, free_port

README = (ROOT / "README.md").read_text()


def sh_blocks(section: str) -> list[str]:
    """The ```sh blocks of one ``## section`` of README.md, in order."""
    start = README.index(f"\n## {section}\n")
    end = README.find("\n## ", start + 1)
    text = README[start : end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def python_snippet() -> str:
    start = README.index("\n## Use it from Python\n")
    return re.findall(r"```python\n(.*?)```", README[start:], flags=re.S)[0]


def fresh_copy(dest: Path) -> Path:
    """The repository's tracked files, as a fresh clone has them (working-tree contents)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dest


def clean_env(home: Path) -> dict[str, str]:
    """A newcomer's environment: own HOME, no BLINDRELAY_*, no PYTHONPATH, no venv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BLINDRELAY_", "PYTHON", "VIRTUAL_ENV", "CLIENTLIB_"))
    }
    env["HOME"] = str(home)
    env.pop("XDG_DATA_HOME", None)
    return env


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {needle!r}:\n{text[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {needle!r} within {timeout} s:\n{path.read_text()[-3000:]}")


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C: SIGINT to the process group, as a terminal does."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.mark.slow
def test_quickstart_commands_verbatim_in_a_new_venv(tmp_path: Path) -> None:
    step1, step2 = sh_blocks("Quickstart")
    command = step1.strip()
    assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert command.endswith("python3 -m pip install . && blindrelay serve")
    # Step 2 runs in a second terminal with the same venv; CI runs it (.ci/run greps for it).
    assert step2.splitlines() == [
        ". .venv/bin/activate",
        "python3 -m pip install -e '.[test]' && python3 -bb -m pytest",
    ]
    repo = fresh_copy(tmp_path / "blindrelay")
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    port = free_port()
    env["BLINDRELAY_PORT"] = str(port)  # the machine may use 7480; the command is verbatim
    log = tmp_path / "step1.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = wait_for_line(log, '"relay_listening"', proc, 600)
        event = next(json.loads(ln) for ln in text.splitlines() if '"relay_listening"' in ln)
        assert event["listen"] == f"http://127.0.0.1:{port}"
        assert event["data"] == str(home / ".local/share/blindrelay/relay.sqlite3")
        with urllib.request.urlopen(event["listen"] + "/v1/info", timeout=10) as r:
            assert r.status == 200
    finally:
        code = interrupt(proc)
    assert code == 0, log.read_text()[-3000:]
    assert (repo / ".venv/bin/blindrelay").exists()
    assert "Traceback" not in log.read_text()


def run_until(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path, needle: str
) -> tuple[str, int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_line(log, needle, proc, 120)
    finally:
        code = interrupt(proc)
    return log.read_text(), code


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    proc = RelayProcess(tmp_path / "relay-data", env, tmp_path / "relay.log")
    proc.start()
    yield proc
    proc.stop()


def test_python_snippet_runs_twice_and_stops_quietly(tmp_path: Path, relay: RelayProcess) -> None:
    snippet = python_snippet()
    assert '"http://127.0.0.1:7480"' in snippet
    script = tmp_path / "snippet.py"
    # The only change: the test's relay instead of the default port.
    script.write_text(snippet.replace('"http://127.0.0.1:7480"', repr(relay.url.rstrip("/"))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    work = tmp_path / "work"
    work.mkdir()
    for run in ("first", "second"):  # the second reopens the keystore
        out, code = run_until(
            [sys.executable, str(script)], work, env, tmp_path / f"{run}.log", "/v1/invite#"
        )
        assert code == 0 and "Traceback" not in out and "KeystoreExists" not in out, out
    assert (work / "alice.keystore").exists()


def test_echo_bot_keeps_its_files_out_of_the_current_directory(
    tmp_path: Path, relay: RelayProcess
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "data")}
    env["ECHO_BOT_PASSPHRASE"] = "a long passphrase"
    env["ECHO_BOT_RELAY"] = relay.url.rstrip("/")
    env.pop("BLINDRELAY_URL", None)
    work = tmp_path / "work"
    work.mkdir()
    bot = [sys.executable, str(ROOT / "examples/echo_bot.py")]
    for run in ("first", "second"):
        out, code = run_until(bot, work, env, tmp_path / f"bot-{run}.log", "invitation: ")
        assert code == 0 and "Traceback" not in out, out
        assert relay.url.rstrip("/") + "/v1/invite#" in out
    assert list(work.iterdir()) == []  # nothing in the current directory
    assert (tmp_path / "data/blindrelay-echo-bot/echo-bot.keystore").exists()
    # The variable it reads is no setting of `blindrelay serve` (which refuses unknown ones).
    assert "BLINDRELAY_" not in (ROOT / "examples/echo_bot.py").read_text()


def test_redis_section_uses_its_own_port_and_directory() -> None:
    [block] = sh_blocks("Redis mode")
    server = " ".join(
        ln.rstrip("\\").strip()
        for ln in block.splitlines()
        if ln.startswith(("redis-server", "    --"))
    )
    commands = "\n".join(ln for ln in block.splitlines() if not ln.startswith("#"))
    assert "--port 6390" in server and "--dir " in server and "6379" not in commands
    assert "--appendonly yes --appendfsync always" in server
    ports = re.findall(r"blindrelay serve --port (\d+)", block)
    assert ports == ["7482", "7483"]  # not 7481: the moderation page's default port
    assert "deploy/local-lb.Caddyfile" in block


def test_moderation_setup_snippet_runs_as_written(tmp_path: Path) -> None:
    [block] = [b for b in sh_blocks("Moderation") if "admin_tokens" in b]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["HOME"] = str(home)
    admin_port = free_port()
    env.update(BLINDRELAY_PORT=str(free_port()), BLINDRELAY_ADMIN_PORT=str(admin_port))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    commands = "\n".join(ln for ln in block.splitlines() if not ln.startswith("#"))
    out, code = run_until(
        ["bash", "-ec", commands], tmp_path, env, tmp_path / "mod.log", '"admin_listening"'
    )
    assert code == 0, out
    tokens = home / ".config/blindrelay/admin_tokens"
    assert tokens.stat().st_mode & 0o777 == 0o600
    names = [pair.split(":", 1)[0] for pair in tokens.read_text().strip().split(",")]
    assert names == ["alice", "bob"]
    secret = tokens.read_text().strip().split(",")[0].split(":", 1)[1]
    assert len(secret) >= 32 and f"alice logs in with {secret}" in out
    assert f"http://blindrelay-admin.localhost:{admin_port}/admin/" in out  # its own name
