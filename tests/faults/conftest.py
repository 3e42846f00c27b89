"""Fault tests (issue 19): live relay processes (``python -m relay serve``) while their
storage fails for real: a ``redis-server`` killed (SIGKILL), stalled (SIGSTOP/SIGCONT), at
``maxmemory`` with ``noeviction``, or on a full disk; SQLite on a real small filesystem (a
tmpfs this test mounts, skipped with the reason where the machine does not allow it).

Every relay started here is checked when its test ends: its output has no traceback, no
line at error level, and names no address but its own listen banner.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from liverelay import RelayProcess, is_banner

#: Starts a relay process: ``relay_factory(name, **BLINDRELAY_settings)``.
RelayFactory = Callable[..., RelayProcess]


def relay_env(**settings: str) -> dict[str, str]:
    """The environment of a relay process: JSON logs, ``BLINDRELAY_<NAME>`` per setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    for name, value in settings.items():
        env[f"BLINDRELAY_{name.upper()}"] = value
    return env


def log_events(relay: RelayProcess) -> list[dict[str, object]]:
    """The relay's JSON log lines (other lines, if any, are skipped)."""
    out: list[dict[str, object]] = []
    for line in relay.log_text().splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                out.append(event)
    return out


#: Events logged at error level on purpose: an operator must act (not relay bugs).
OPERATOR_ERRORS = frozenset({"storage_full"})


def assert_clean_log(relay: RelayProcess) -> None:
    """No traceback, nothing at error level (but :data:`OPERATOR_ERRORS`), no address but
    the listen banner."""
    text = relay.log_text()
    assert "Traceback" not in text
    errors = [
        e
        for e in log_events(relay)
        if e.get("level") in ("error", "critical") and e.get("event") not in OPERATOR_ERRORS
    ]
    assert not errors, errors
    lines = [ln for ln in text.splitlines() if not is_banner(ln)]
    assert not re.search(r"\b127\.0\.0\.1\b", "\n".join(lines))


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[RelayFactory]:
    """Start relay processes; each is stopped and its log checked at teardown."""
    started: list[RelayProcess] = []

    def start(
        name: str = "relay", *, data_dir: Path | None = None, **settings: str
    ) -> RelayProcess:
        relay = RelayProcess(
            data_dir or tmp_path / f"{name}-data", relay_env(**settings), tmp_path / f"{name}.log"
        )
        started.append(relay)
        relay.start()
        return relay

    yield start
    for relay in started:
        relay.stop()
    for relay in started:
        assert_clean_log(relay)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount small tmpfs filesystems: ``small_fs(mib)`` returns an empty mounted directory
    (unmounted at teardown). Skipped where this process may not mount (not root, or no
    CAP_SYS_ADMIN in a container)."""
    mounts: list[Path] = []

    def mount(mib: int) -> Path:
        target = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
        target.mkdir()
        mount_bin = shutil.which("mount")
        if os.geteuid() != 0 or mount_bin is None:
            pytest.skip("mounting a small filesystem needs root and mount(8)")
        done = subprocess.run(
            [mount_bin, "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs", str(target)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip("this machine does not allow mounting a tmpfs (no CAP_SYS_ADMIN)")
        mounts.append(target)
        return target

    yield mount
    umount = shutil.which("umount")
    for target in mounts:
        if umount is not None:
            subprocess.run([umount, "-l", str(target)], capture_output=True, check=False)
