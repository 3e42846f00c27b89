"""Live relay processes on either backend."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import RelayProcess


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
