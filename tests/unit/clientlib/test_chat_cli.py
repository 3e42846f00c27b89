"""blindchat (clientlib.chat): argument parsing, error mapping and exit codes, QR rendering,
text sanitising, and that no secret reaches the output. In-process, real keystores, no relay
(an unreachable one where that is the point)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import socket
from pathlib import Path

import pytest
import segno

from clientlib.chat import account, cli
from clientlib.chat.listen import format_event
from clientlib.chat.qr import QR_BORDER, qr_matrix, render_qr
from clientlib.chat.text import (
    boundaries_lines,
    clean,
    describe_warning,
    group_safety_number,
    history_line,
    privacy_line,
)
from clientlib.client import (
    Client,
    ClientConfig,
    ClientWarning,
    Contact,
    ContactRequest,
    Invitation,
    MessageReceived,
    RequestReceived,
    StoredMessage,
)
from clientlib.client.types import PrivacySettings
from clientlib.keystore import FileKeystore
from clientlib.wire.frames import Boundaries

PASS = "correct horse battery staple"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", PASS)
    monkeypatch.delenv("BLINDCHAT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))  # never touch the real default


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An initialised home whose relay is a closed port (nothing listens there)."""
    h = tmp_path / "alice"
    relay = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(
        capsys, "--home", str(h), "init", "--relay", relay, "--name", "alice", "--kdf", "minimum"
    )
    assert (code, err) == (0, ""), err
    assert f"relay:    {relay}" in out
    return h


# --- parsing ----------------------------------------------------------------------------


def test_parse_global_options_before_or_after_the_command() -> None:
    p = cli.build_parser()
    a = p.parse_args(["--home", "/x", "send", "bob", "hello", "world"])
    assert (a.home, a.contact, a.text, a.func) == ("/x", "bob", ["hello", "world"], cli.cmd_send)
    b = p.parse_args(["send", "--home", "/y", "--offline", "bob", "hi"])
    assert (b.home, b.offline, b.timeout) == ("/y", True, cli.DEFAULT_TIMEOUT)
    c = p.parse_args(["history", "bob"])
    assert (c.home, c.passphrase_file, c.n, c.offline) == (None, None, 20, False)


def test_parse_each_command() -> None:
    p = cli.build_parser()
    a = p.parse_args(["init", "--kdf", "minimum", "--name", "Al"])
    assert (a.func, a.kdf, a.name, a.relay) == (cli.cmd_init, "minimum", "Al", cli.DEFAULT_RELAY)
    assert p.parse_args(["init"]).kdf == "moderate"
    assert p.parse_args(["invite", "--no-qr"]).no_qr is True
    a = p.parse_args(["accept", "http://h/v1/invite#x", "--intro", "hi there"])
    assert (a.func, a.link, a.intro) == (cli.cmd_accept, "http://h/v1/invite#x", "hi there")
    assert p.parse_args(["requests"]).func is cli.cmd_requests
    a = p.parse_args(["requests", "accept", "1a2b", "--name", "Bob"])
    assert (a.func, a.id, a.name) == (cli.cmd_requests_accept, "1a2b", "Bob")
    assert p.parse_args(["requests", "decline", "1a2b"]).func is cli.cmd_requests_decline
    assert p.parse_args(["listen", "--to", "bob"]).to == "bob"
    assert p.parse_args(["listen"]).to is None
    assert p.parse_args(["history", "bob", "-n", "5"]).n == 5
    a = p.parse_args(["verify", "bob", "--confirm", "--no-qr"])
    assert (a.confirm, a.no_qr) == (True, True)
    for cmd in ("contacts", "whoami"):
        assert p.parse_args([cmd]).func is getattr(cli, f"cmd_{cmd}")
    assert p.parse_args(["holdings"]).func is account.cmd_holdings


def test_parse_consent_and_account_commands() -> None:
    p = cli.build_parser()
    assert (p.parse_args(["block", "bob"]).func, p.parse_args(["block", "bob"]).contact) == (
        cli.cmd_block,
        "bob",
    )
    assert p.parse_args(["unblock", "1a2b"]).func is cli.cmd_unblock
    a = p.parse_args(["privacy", "bob"])
    assert (a.func, a.receipts, a.typing, a.media) == (cli.cmd_privacy, None, None, None)
    a = p.parse_args(["privacy", "bob", "--receipts", "off", "--typing", "ON", "--media", "no"])
    assert (a.receipts, a.typing, a.media) == (False, True, False)
    a = p.parse_args(["boundaries"])
    assert a.func is account.cmd_boundaries
    a = p.parse_args(["boundaries", "set", "--pow", "8"])
    assert (a.func, a.size, a.attachments, a.per_day, a.pow) == (
        account.cmd_boundaries_set,
        None,
        None,
        None,
        8,
    )
    a = p.parse_args(
        ["boundaries", "set", "--size", "65536", "--attachments", "on", "--per-day", "5"]
    )
    assert (a.size, a.attachments, a.per_day, a.pow) == (65536, True, 5, None)
    a = p.parse_args(["export", "out.json", "--offline"])
    assert (a.func, a.path, a.offline) == (account.cmd_export, "out.json", True)
    a = p.parse_args(["delete-account"])
    assert (a.func, a.yes) == (account.cmd_delete_account, False)
    assert p.parse_args(["delete-account", "--yes"]).yes is True


def test_kdf_option_is_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["init", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--relay" in out
    assert "--kdf" not in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["send", "bob"],  # no text
        ["init", "--kdf", "fast"],
        ["history", "bob", "-n", "x"],
        ["requests", "accept"],
        ["block"],
        ["unblock", "a", "b"],
        ["privacy", "bob", "--media", "maybe"],
        ["boundaries", "set", "--size", "3000"],
        ["boundaries", "set", "--size", "1024"],
        ["boundaries", "set", "--per-day", "0"],
        ["boundaries", "set", "--per-day", "100001"],
        ["boundaries", "set", "--pow", "33"],
        ["boundaries", "set", "--pow", "-1"],
        ["boundaries", "set", "--attachments", "x"],
        ["export"],
        ["delete-account", "--force"],
    ],
)
def test_usage_errors_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert "usage:" in err
    assert "Traceback" not in err


# --- init, whoami, secrets ---------------------------------------------------------------


def test_init_then_whoami_print_no_secret(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", str(home), "whoami")
    assert (code, err) == (0, "")
    assert "name:     alice" in out
    assert re.search(r"^identity: (\d{5} ){5}\d{5}$", out, re.M)
    assert "contacts: 0 (0 pending)" in out
    with FileKeystore.open(home / "keystore", PASS.encode(), rng=os.urandom) as ks:
        secrets = [ks.get("meta", b"identity"), ks.get("meta", b"history-key")]
    for secret in secrets:
        assert secret is not None
        assert secret.hex() not in out
        assert secret.hex() not in err
    assert PASS not in out + err


def test_init_refuses_an_existing_keystore(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (home / "keystore").read_bytes()
    code, out, err = run(capsys, "--home", str(home), "init", "--kdf", "minimum")
    assert code == cli.EXIT_KEYSTORE
    assert out == ""
    assert err.strip() == (
        f"blindchat: a keystore already exists at {home / 'keystore'}; refusing to overwrite"
    )
    assert (home / "keystore").read_bytes() == before


@pytest.mark.parametrize(
    ("relay", "name"),
    [("ftp://example.org", "x"), ("127.0.0.1:7480", "x"), (cli.DEFAULT_RELAY, "a\x1b[2Jb")],
)
def test_init_rejects_bad_relay_url_or_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], relay: str, name: str
) -> None:
    h = tmp_path / "h"
    code, _, err = run(capsys, "--home", str(h), "init", "--relay", relay, "--name", name)
    assert code == cli.EXIT_USAGE
    assert len(err.strip().splitlines()) == 1
    assert not (h / "keystore").exists()


# --- keystore errors: exit 74, one clear line, nothing written ---------------------------


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert PASS not in err
    return lines[0]


def test_wrong_passphrase(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (home / "keystore").read_bytes()
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", "not the passphrase")
    code, out, err = run(capsys, "--home", str(home), "contacts", "--offline")
    assert (code, out) == (cli.EXIT_KEYSTORE, "")
    assert one_line(err) == "blindchat: wrong passphrase or damaged keystore"
    assert "not the passphrase" not in err
    assert (home / "keystore").read_bytes() == before


def test_missing_keystore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = tmp_path / "nobody"
    code, out, err = run(capsys, "--home", str(h), "whoami")
    assert (code, out) == (cli.EXIT_KEYSTORE, "")
    assert one_line(err) == (
        f"blindchat: no keystore at {h / 'keystore'}; run `blindchat --home {h} init`"
    )
    assert not h.exists()


def test_locked_keystore(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "keystore"
    before = path.read_bytes()
    with FileKeystore.open(path, PASS.encode(), rng=os.urandom):
        code, out, err = run(capsys, "--home", str(home), "send", "--offline", "x", "hi")
    assert (code, out) == (cli.EXIT_KEYSTORE, "")
    assert "keystore is in use by another blindchat process" in one_line(err)
    assert path.read_bytes() == before


def test_keystore_file_from_a_newer_version(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "keystore"
    raw = bytearray(path.read_bytes())
    raw[4] = 2  # the format version byte
    path.write_bytes(bytes(raw))
    code, out, err = run(capsys, "--home", str(home), "whoami")
    assert (code, out) == (cli.EXIT_KEYSTORE, "")
    assert one_line(err) == (
        "blindchat: keystore was written by a newer version of blindchat; upgrade to open it"
    )
    assert path.read_bytes() == bytes(raw)


def test_client_state_from_a_newer_version(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "keystore"
    with FileKeystore.open(path, PASS.encode(), rng=os.urandom) as ks:
        ks.put("meta", b"state-version", bytes((200,)))
        ks.save()
    before = path.read_bytes()
    code, _, err = run(capsys, "--home", str(home), "contacts", "--offline")
    assert code == cli.EXIT_KEYSTORE
    assert "newer version of blindchat" in one_line(err)
    assert path.read_bytes() == before


def test_damaged_keystore(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = home / "keystore"
    path.write_bytes(b"NOPE" + path.read_bytes()[4:])
    code, _, err = run(capsys, "--home", str(home), "whoami")
    assert code == cli.EXIT_KEYSTORE
    assert one_line(err).startswith(f"blindchat: damaged keystore at {path}")


# --- passphrase sources -----------------------------------------------------------------


def test_passphrase_file_and_missing_passphrase(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BLINDCHAT_PASSPHRASE")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: never prompt
    code, _, err = run(capsys, "--home", str(home), "whoami")
    assert code == cli.EXIT_USAGE
    assert "no passphrase" in one_line(err)

    pf = tmp_path / "pass.txt"
    pf.write_text(PASS + "\n")
    code, out, err = run(capsys, "--home", str(home), "whoami", "--passphrase-file", str(pf))
    assert (code, err) == (0, "")
    assert "name:     alice" in out

    code, _, err = run(
        capsys, "--home", str(home), "--passphrase-file", str(tmp_path / "no"), "whoami"
    )
    assert code == cli.EXIT_USAGE
    assert "cannot read passphrase file" in one_line(err)


# --- relay unreachable: exit 69 (or local data with --offline) ----------------------------


def test_relay_unreachable(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", str(home), "invite")
    assert (code, out) == (cli.EXIT_RELAY, "")
    assert re.fullmatch(r"blindchat: relay unreachable at http://127\.0\.0\.1:\d+", one_line(err))

    code, _, err = run(capsys, "--home", str(home), "contacts", "--timeout", "2")
    assert code == cli.EXIT_RELAY
    assert one_line(err).endswith("(add --offline to use what is stored locally)")

    code, out, err = run(capsys, "--home", str(home), "contacts", "--offline")
    assert (code, err) == (0, "")
    assert out.startswith("no contacts yet")

    code, _, err = run(capsys, "--home", str(home), "--offline", "invite")
    assert code == cli.EXIT_USAGE
    assert "needs the relay" in one_line(err)


def test_user_errors_exit_1(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--home", str(home), "--offline", "history", "bob")
    assert (code, one_line(err)) == (cli.EXIT_FAILED, "blindchat: no such contact")
    code, _, err = run(capsys, "--home", str(home), "accept", "http://x/not-an-invite")
    assert code == cli.EXIT_USAGE
    assert one_line(err).startswith("blindchat: not a valid invitation link")
    code, _, err = run(capsys, "--home", str(home), "requests", "decline", "abcd")
    assert (code, one_line(err)) == (cli.EXIT_FAILED, "blindchat: no such request")


# --- QR codes -----------------------------------------------------------------------------


def decode_blocks(text: str) -> list[list[bool]]:
    """Rendered half blocks back to modules (True = dark), padding row dropped."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        top = [ch in " \u2584" for ch in line]  # top half is background (dark)
        bottom = [ch in " \u2580" for ch in line]
        rows += [top, bottom]
    return rows


def test_qr_of_an_invitation_is_square_with_segnos_module_count() -> None:
    link = Invitation("http://127.0.0.1:7480", bytes(range(16)), bytes(range(32))).link
    assert len(link) == 98
    qr = segno.make(link, error="m", micro=False)
    n = len(qr.matrix)
    assert (qr.designator, n) == ("6-M", 41)
    text = render_qr(link)
    lines = text.splitlines()
    size = n + 2 * QR_BORDER
    assert len(lines) == math.ceil(size / 2)
    assert all(len(line) == size for line in lines)
    assert set(text) <= {" ", "\u2580", "\u2584", "\u2588", "\n"}
    modules = decode_blocks(text)
    assert modules[size] == [True] * size  # the padding half row (odd size) is background
    assert modules[:size] == qr_matrix(link)
    inner = [row[QR_BORDER : QR_BORDER + n] for row in modules[QR_BORDER : QR_BORDER + n]]
    assert inner == [[bool(b) for b in row] for row in qr.matrix]
    assert all(not any(row) for row in modules[:QR_BORDER])  # quiet zone is light


def test_qr_of_binary_safety_payload() -> None:
    payload = bytes([1]) + bytes(range(64))
    qr = segno.make(payload, error="m", micro=False)
    n = len(qr.matrix)
    assert decode_blocks(render_qr(payload, border=0))[:n] == [
        [bool(b) for b in row] for row in qr.matrix
    ]


# --- text ---------------------------------------------------------------------------------


def test_clean_escapes_terminal_controls_and_bidi() -> None:
    assert clean("hé ✓ 日本") == "hé ✓ 日本"
    assert clean("a\x1b[2Jb\x07") == "a\\x1b[2Jb\\x07"
    assert clean("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert clean("a\nb") == "a\\x0ab"
    assert clean("a\nb", multiline=True) == "a\n    b"
    assert clean("a\r\x9bb") == "a\\x0d\\x9bb"


def test_safety_number_grouping() -> None:
    digits = "".join(str(i % 10) for i in range(60))
    rows = group_safety_number(" ".join(digits[i : i + 5] for i in range(0, 60, 5)))
    assert rows == [
        "01234 56789 01234 56789",
        "01234 56789 01234 56789",
        "01234 56789 01234 56789",
    ]


def test_event_and_history_lines_are_one_line_and_sanitised() -> None:
    contact = Contact("ab" * 16, "bob\x1b]0;x\x07", "accepted", False, "0" * 60, 0)
    msg = StoredMessage(contact.id, "cd" * 8, "in", "hi\x1b[31m\nthere", 0, 0, "received")
    line = format_event(None, MessageReceived(contact, msg))  # type: ignore[arg-type]
    assert line is not None
    assert "\x1b" not in line
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] bob\\x1b\]0;x\\x07: hi\\x1b\[31m\n    there", line)
    req = ContactRequest("ef" * 16, None, "hello", "0" * 60, 0)
    line = format_event(None, RequestReceived(req))  # type: ignore[arg-type]
    assert line is not None
    assert line.endswith(
        '* contact request efefefef from (no name given): "hello" '
        "(/accept efefefef or /decline efefefef)"
    )
    out = StoredMessage(contact.id, "00" * 8, "out", "yo", 0, 0, "queued")
    assert history_line(out, "bob").endswith("] you: yo  (queued)")


# --- consent and account commands, without a relay ---------------------------------------


def test_commands_that_need_the_relay_refuse_offline(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["block", "bob"],
        ["unblock", "bob"],
        ["holdings"],
        ["boundaries", "set", "--pow", "8"],
        ["delete-account", "--yes"],
    ):
        code, out, err = run(capsys, "--home", str(home), "--offline", *argv)
        assert (code, out) == (cli.EXIT_USAGE, ""), argv
        assert "needs the relay; run it without --offline" in one_line(err)
    assert (home / "keystore").exists()


def test_boundaries_set_needs_a_change(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--home", str(home), "boundaries", "set")
    assert (code, out) == (cli.EXIT_USAGE, "")
    assert one_line(err) == (
        "blindchat: nothing to change: give --size, --attachments, --per-day or --pow"
    )


def test_boundaries_offline_shows_the_local_ones(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--home", str(home), "--offline", "boundaries")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "boundaries of your contact addresses (as stored locally):"
    assert re.search(r"^  largest request:  \d+ bytes$", out, re.M)
    assert re.search(r"^  proof of work:    (\d+ bits|none)$", out, re.M)


def test_privacy_of_an_unknown_contact(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--home", str(home), "--offline", "privacy", "bob")
    assert (code, one_line(err)) == (cli.EXIT_FAILED, "blindchat: no such contact")


def test_export_offline_and_refusal_to_overwrite(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "export.json"
    code, out, err = run(capsys, "--home", str(home), "--offline", "export", str(target))
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"exported 0 conversations (0 messages) and 0 pending requests to {target}"
    )
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert (doc["format"], doc["contacts"], doc["requests"]) == ("blindrelay-export", [], [])
    assert target.stat().st_mode & 0o777 == 0o600
    with FileKeystore.open(home / "keystore", PASS.encode(), rng=os.urandom) as ks:
        seed = ks.get("meta", b"identity")
    assert seed is not None
    assert seed.hex() not in target.read_text()

    before = target.read_bytes()
    code, out, err = run(capsys, "--home", str(home), "--offline", "export", str(target))
    assert (code, out) == (cli.EXIT_FAILED, "")
    assert one_line(err) == f"blindchat: {target} already exists; refusing to overwrite it"
    assert target.read_bytes() == before

    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")  # not followed, not replaced
    code, _, err = run(capsys, "--home", str(home), "--offline", "export", str(link))
    assert code == cli.EXIT_FAILED
    assert "refusing to overwrite" in one_line(err)
    assert not (tmp_path / "nowhere").exists()


class TerminalInput(io.StringIO):
    """Stdin that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def test_delete_account_without_yes_refuses_when_not_interactive(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("delete\n"))  # a pipe: never a confirmation
    before = (home / "keystore").read_bytes()
    code, out, err = run(capsys, "--home", str(home), "delete-account")
    assert (code, out) == (cli.EXIT_USAGE, "")
    assert one_line(err) == (
        "blindchat: delete-account asks for confirmation on a terminal; add --yes to delete "
        "without asking"
    )
    assert (home / "keystore").read_bytes() == before


@pytest.mark.parametrize("answer", ["", "\n", "yes\n", "Delete it\n", "DELETE\n"])
def test_delete_account_needs_the_word_delete(
    home: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput(answer))
    before = (home / "keystore").read_bytes()
    code, out, err = run(capsys, "--home", str(home), "delete-account")
    assert (code, out) == (cli.EXIT_FAILED, "")
    assert "Type delete to confirm: " in err
    assert err.rstrip().splitlines()[-1].endswith("blindchat: not confirmed; nothing was deleted")
    assert (home / "keystore").read_bytes() == before


def test_delete_account_confirmed_but_relay_unreachable_keeps_everything(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput("  delete \n"))
    before = (home / "keystore").read_bytes()
    code, out, err = run(capsys, "--home", str(home), "delete-account")
    assert (code, out) == (cli.EXIT_RELAY, "")
    assert "This deletes, for good: every mailbox of yours at http://127.0.0.1:" in err
    assert "Reports you filed are not deleted: they stay with the relay's moderators" in err
    assert re.search(
        r"blindchat: relay unreachable at http://127\.0\.0\.1:\d+; nothing local was "
        r"deleted \(run it again later\)$",
        err.rstrip(),
    ), err
    assert (home / "keystore").read_bytes() == before

    code, out, err = run(capsys, "--home", str(home), "delete-account", "--yes")
    assert (code, out) == (cli.EXIT_RELAY, "")
    assert one_line(err).endswith("; nothing local was deleted (run it again later)")
    assert (home / "keystore").read_bytes() == before


# --- text of the new events and settings --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("QUOTA", "daily limit reached (try again tomorrow)"),
        ("POW", "proof of work not accepted"),
        ("BOUNDARY", "too large for what the address accepts"),
        ("AUTH", "address gone or banned"),
        ("X\x1b", "relay answered X\\x1b"),
    ],
)
def test_request_refused_is_readable(code: str, reason: str) -> None:
    async def main() -> None:
        async with Client.create(
            None,
            PASS,
            relay_url="http://127.0.0.1:9",
            config=ClientConfig(connect=False, kdf_strength="minimum"),
        ) as client:
            ev = ClientWarning("request_refused", code, "ab" * 16)
            line = format_event(client, ev)
            assert line is not None
            assert re.fullmatch(
                r"\[\d\d:\d\d:\d\d\] ! request to abababab refused by the relay: "
                + re.escape(reason),
                line,
            ), line
            assert describe_warning(ev) == f"contact request refused by the relay: {reason}"

    asyncio.run(main())


def test_settings_and_boundaries_lines() -> None:
    assert privacy_line(PrivacySettings(receipts=False, typing=True, media=False)) == (
        "receipts off, typing on, media off"
    )
    assert boundaries_lines(Boundaries(size=2048, att=1, day=7, pow=0)) == [
        "  largest request:  2048 bytes",
        "  attachments:      on",
        "  requests per day: 7",
        "  proof of work:    none",
    ]
    assert boundaries_lines(Boundaries(size=4096, att=0, day=100, pow=12))[3] == (
        "  proof of work:    12 bits"
    )
    ev = ClientWarning("content_refused", "", "ab" * 16)
    assert "privacy settings" in describe_warning(ev)
