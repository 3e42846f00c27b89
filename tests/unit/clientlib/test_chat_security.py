"""blindchat passphrase, duress set/clear and init --force: in-process, real keystores, no
relay (these commands work offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clientlib.chat import cli

PASS = "correct horse battery staple"
NEW = "a brand new passphrase for alice"
DURESS = "purple elephant under the stairs"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", PASS)
    for var in ("BLINDCHAT_HOME", "BLINDCHAT_NEW_PASSPHRASE", "BLINDCHAT_DURESS_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    h = tmp_path / "alice"
    code, _, err = run(
        capsys, "init", "--home", str(h), "--relay", "http://127.0.0.1:9", "--kdf", "minimum"
    )
    assert code == 0, err
    return h


def test_init_refuses_a_weak_passphrase_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", "password1234")
    h = tmp_path / "weak"
    args = ["init", "--home", str(h), "--relay", "http://127.0.0.1:9", "--kdf", "minimum"]
    code, _, err = run(capsys, *args)
    assert code == cli.EXIT_FAILED
    assert "passphrase too weak" in err and "--force" in err and "password1234" not in err
    assert not (h / "keystore").exists()
    code, _out, err = run(capsys, *args, "--force")
    assert code == 0, err
    assert (h / "keystore").exists()


def test_passphrase_change(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINDCHAT_NEW_PASSPHRASE", "password1234")
    code, _, err = run(capsys, "passphrase", "--home", str(home))
    assert code == cli.EXIT_FAILED and "too weak" in err
    monkeypatch.setenv("BLINDCHAT_NEW_PASSPHRASE", NEW)
    code, out, err = run(capsys, "passphrase", "--home", str(home))
    assert code == 0, err
    assert "passphrase changed" in out and NEW not in out + err
    code, _, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == cli.EXIT_KEYSTORE  # the old one no longer opens it
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", NEW)
    code, out, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == 0, err


def test_duress_set_opens_a_decoy_and_clear_removes_it(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, real_who, _ = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == 0
    monkeypatch.setenv("BLINDCHAT_DURESS_PASSPHRASE", PASS)
    code, _, err = run(capsys, "duress", "set", "--home", str(home))
    assert code == cli.EXIT_FAILED and "must differ" in err
    monkeypatch.setenv("BLINDCHAT_DURESS_PASSPHRASE", DURESS)
    code, out, err = run(capsys, "duress", "set", "--home", str(home), "--decoy-name", "Al")
    assert code == 0, err
    assert "decoy" in out and DURESS not in out + err
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", DURESS)
    code, decoy_who, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == 0, err
    assert decoy_who != real_who and "Al" in decoy_who
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", PASS)
    code, again, _ = run(capsys, "whoami", "--home", str(home), "--offline")
    assert again == real_who
    code, out, err = run(capsys, "duress", "clear", "--home", str(home))
    assert code == 0, err
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", DURESS)
    code, _, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == cli.EXIT_KEYSTORE


def test_duress_wipe(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINDCHAT_DURESS_PASSPHRASE", DURESS)
    code, out, err = run(capsys, "duress", "set", "--wipe", "--home", str(home))
    assert code == 0 and "DESTROYS" in out
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", DURESS)
    code, _, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == 0, err
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", PASS)
    code, _, err = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == cli.EXIT_KEYSTORE and "wrong passphrase" in err


def test_duress_without_action_is_usage(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _err = run(capsys, "duress", "--home", str(home))
    assert code == cli.EXIT_USAGE


def test_backup_and_restore(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "alice.backup"
    code, out, err = run(capsys, "backup", str(path), "--home", str(home))
    assert code == 0, err
    assert "recovery key (shown once" in out
    words = [w for _, w in re.findall(r"(\d+)\. ([a-z]+)", out)]
    assert len(words) == 24
    code, _, err = run(capsys, "backup", str(path), "--home", str(home))
    assert code == cli.EXIT_USAGE and "exists" in err
    code, who, _ = run(capsys, "whoami", "--home", str(home), "--offline")
    assert code == 0
    new = tmp_path / "new-machine"
    base = ["restore", str(path), "--home", str(new), "--kdf", "minimum"]
    monkeypatch.setenv("BLINDCHAT_RECOVERY_WORDS", " ".join(reversed(words)))
    code, _, err = run(capsys, *base)
    assert code == cli.EXIT_FAILED and "nothing was created" in err
    assert not (new / "keystore").exists()
    monkeypatch.setenv("BLINDCHAT_RECOVERY_WORDS", " ".join(words))
    code, out, err = run(capsys, *base)
    assert code == 0, err
    assert "restored keystore" in out and " ".join(words) not in out + err
    code, who2, _ = run(capsys, "whoami", "--home", str(new), "--offline")
    ident = [ln for ln in who.splitlines() if "identity" in ln]
    assert code == 0 and ident and ident == [ln for ln in who2.splitlines() if "identity" in ln]
    code, _, err = run(capsys, *base)
    assert code == cli.EXIT_KEYSTORE and "already exists" in err


def test_listen_shows_device_and_session_events() -> None:
    from clientlib.chat.listen import format_event
    from clientlib.client import (
        Contact,
        Device,
        DeviceLinked,
        DeviceRemoved,
        DevicesChanged,
        MessageSynced,
        PrivacySettings,
        SessionRenewed,
        StoredMessage,
    )

    s = PrivacySettings(receipts=True, typing=True, media=True, delivery_receipts=True)
    bob = Contact("ab" * 16, "bob", "accepted", False, "0" * 60, 0, False, s, None, 0)
    lines = [
        format_event(None, SessionRenewed(bob)),  # type: ignore[arg-type]
        format_event(None, DevicesChanged(bob, 2)),  # type: ignore[arg-type]
        format_event(None, DeviceLinked(Device("cd" * 16, "laptop", False))),  # type: ignore[arg-type]
        format_event(None, DeviceRemoved(Device("cd" * 16, "laptop", True))),  # type: ignore[arg-type]
        format_event(
            None,  # type: ignore[arg-type]
            MessageSynced(bob, StoredMessage(bob.id, "00" * 16, "out", "hi", 0, 0, "sent")),
        ),
    ]
    assert lines[0] is not None and lines[0].endswith("bob: safety number unchanged, new session")
    assert lines[1] is not None and "now has 2 device(s)" in lines[1] and "unverified" in lines[1]
    assert lines[2] is not None and "a new device was linked" in lines[2] and "cdcdcdcd" in lines[2]
    assert lines[3] is not None and "this device (laptop) was removed" in lines[3]
    assert lines[4] is not None and lines[4].endswith("you (other device) to bob: hi")
