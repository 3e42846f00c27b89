"""blindchat passphrase, duress set/clear and init --force: in-process, real keystores, no
relay (these commands work offline)."""

from __future__ import annotations

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
