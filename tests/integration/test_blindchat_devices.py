"""blindchat devices, devices link/approve/remove: the real CLI as subprocesses against a
live relay process (issue 15, protocol.md §24.5-§24.7)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from liverelay import RelayProcess
from test_blindchat import REPO, Lines, blindchat, chat_env, ok, pair, relay, relay_log

from clientlib.chat.cli import EXIT_FAILED

__all__ = ["relay", "relay_log"]  # the module fixtures, shared


def run(home: Path, *args: str) -> tuple[subprocess.Popen[bytes], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clientlib.chat", "--home", str(home), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=chat_env(),
        cwd=REPO,
    )
    return proc, Lines(proc)


def answer(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()


def start_link(home: Path, relay: RelayProcess) -> tuple[subprocess.Popen[bytes], Lines, str]:
    url = relay.url.rstrip("/")
    proc, lines = run(home, "devices", "link", "--relay", url, "--kdf", "minimum")
    code = lines.expect("blindchat devices approve").split()[-1]
    assert code.startswith("brlink1:")
    return proc, lines, code


@pytest.mark.slow  # about 15 CLI runs (~1 s each); the Client-level tests cover acceptance
def test_devices_link_approve_remove(tmp_path: Path, relay: RelayProcess) -> None:
    alice, _bob = pair(tmp_path, relay)
    out = ok(alice, "devices")
    assert re.search(r"^1 of at most 5 devices:$", out, re.M), out
    assert re.search(r"^  [0-9a-f]{8}  first device  \(this device\)$", out, re.M), out

    # Codes that differ: the approving device sends nothing; that link is spent.
    bad_proc, bad_lines, code = start_link(tmp_path / "stranger", relay)
    appr, appr_lines = run(alice, "devices", "approve", code)
    shown = appr_lines.expect("code: ").split("code: ")[1].replace(" ", "")
    new_sas = bad_lines.expect("code: ").split("code: ")[1].split("  -")[0].replace(" ", "")
    assert shown == new_sas  # both devices show the same code
    answer(appr, f"{(int(shown) + 1) % 1_000_000:06d}")
    status, err = appr_lines.finish()
    assert status == EXIT_FAILED and "codes differ" in err, err
    bad_proc.kill()
    bad_lines.finish()
    assert not (tmp_path / "stranger" / "keystore").exists()
    assert "1 of at most 5 devices:" in ok(alice, "devices")

    # The same code on both: the laptop joins.
    laptop = tmp_path / "alice-laptop"
    _proc, lines, code = start_link(laptop, relay)
    appr, appr_lines = run(alice, "devices", "approve", code, "--name", "laptop")
    shown = appr_lines.expect("code: ").split("code: ")[1]
    assert lines.expect("code: ").split("code: ")[1].startswith(shown)
    answer(appr, shown)
    appr_lines.expect("approved: device", timeout=60)
    status, err = appr_lines.finish(60)
    assert status == 0, err
    lines.expect("linked: this is device", timeout=60)
    status, err = lines.finish(60)
    assert status == 0, err
    out = ok(alice, "devices")
    assert "2 of at most 5 devices:" in out and "laptop" in out
    assert "laptop  (this device)" in ok(laptop, "devices")
    done = blindchat(alice, "devices", "approve", code, "--sas", "123456")
    assert done.returncode == EXIT_FAILED and "already used" in done.stderr, done.stderr

    # Remove the laptop from the first device.
    laptop_id = re.search(r"^  ([0-9a-f]{8})  laptop$", ok(alice, "devices"), re.M)
    assert laptop_id
    assert "removed device" in ok(alice, "devices", "remove", laptop_id.group(1))
    assert "1 of at most 5 devices:" in ok(alice, "devices")
