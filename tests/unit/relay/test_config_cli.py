"""Configuration precedence, validation and the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relay.cli import EX_CONFIG, main
from relay.config import ConfigError, load_config


def test_defaults_are_loopback_sqlite() -> None:
    cfg = load_config(environ={})
    assert cfg.host == "127.0.0.1" and cfg.storage == "sqlite"
    assert cfg.envelope_ttl_s == 21 * 86400
    assert (cfg.prekey_max_items, cfg.prekey_fetches_per_hour) == (200, 120)
    assert str(cfg.resolved_sqlite_path()).endswith("relay.sqlite3")


def test_env_over_file_over_defaults(tmp_path: Path) -> None:
    f = tmp_path / "relay.toml"
    f.write_text('port = 9000\nhost = "0.0.0.0"\n[unused]\n')
    with pytest.raises(ConfigError, match="unused"):
        load_config(f, environ={})
    f.write_text('[relay]\nport = 9000\nhost = "0.0.0.0"\nmailbox_max_envelopes = 5\n')
    cfg = load_config(f, environ={"BLINDRELAY_PORT": "9100"})
    assert (cfg.port, cfg.host, cfg.mailbox_max_envelopes) == (9100, "0.0.0.0", 5)


def test_secret_from_file_and_redaction(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("redis://:hunter2@127.0.0.1:1/0\n")
    cfg = load_config(
        environ={"BLINDRELAY_STORAGE": "redis", "BLINDRELAY_REDIS_URL_FILE": str(secret)}
    )
    assert cfg.redis_url == "redis://:hunter2@127.0.0.1:1/0"
    assert "hunter2" not in repr(cfg) and "hunter2" not in json.dumps(cfg.redacted())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BLINDRELAY_PORT": "x"}, "port"),
        ({"BLINDRELAY_PORT": "70000"}, "port"),
        ({"BLINDRELAY_STORAGE": "mongo"}, "storage"),
        ({"BLINDRELAY_ENVELOPE_TTL_S": "1"}, "envelope_ttl_s"),
        ({"BLINDRELAY_MAX_FRAME_BYTES": "99999999"}, "max_frame_bytes"),
        ({"BLINDRELAY_PREKEY_MAX_ITEMS": "-1"}, "prekey_max_items"),
        ({"BLINDRELAY_PREKEY_FETCHES_PER_HOUR": "many"}, "prekey_fetches_per_hour"),
        ({"BLINDRELAY_METRICS": "maybe"}, "metrics"),
        ({"BLINDRELAY_EVENT_LOOP": "trio"}, "event_loop"),
        ({"BLINDRELAY_NOT_A_SETTING": "1"}, "unknown"),
        ({"BLINDRELAY_REDIS_URL_FILE": "/nonexistent/x"}, "secret"),
    ],
)
def test_invalid_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)


def test_cli_check_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("BLINDRELAY_REDIS_URL", "redis://:pw-secret@h:1/0")
    assert main(["check-config", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pw-secret" not in out and json.loads(out)["redis_url"] == "***"
    monkeypatch.setenv("BLINDRELAY_PORT", "nope")
    assert main(["check-config"]) == EX_CONFIG
    assert "port" in capsys.readouterr().err


def test_cli_usage_error() -> None:
    assert main(["frobnicate"]) == 2


def test_event_loop_choice() -> None:
    """``asyncio`` runs on asyncio's own loop; ``auto`` on uvloop when it is installed."""
    import asyncio

    from relay.cli import run_loop

    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    run_loop("asyncio", main())
    run_loop("auto", main())
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert seen == ["asyncio", "asyncio"]
    else:
        assert seen == ["asyncio", "uvloop"]
