"""blindchat end to end: the real CLI as subprocesses against a live relay process (SQLite).

Alice and Bob each get a home directory; Alice invites, Bob accepts the link, Alice accepts
the request, they exchange messages with ``send``/``history`` and then live with two
``listen --to`` sessions driven over stdin/stdout pipes.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from liverelay import RelayProcess, is_banner

from clientlib.chat.cli import EXIT_FAILED, EXIT_KEYSTORE, EXIT_USAGE

PASS = "integration passphrase"
#: This checkout; put first on the subprocesses' path so that they run this code, whatever
#: ``pip install -e`` last pointed the installed package at.
REPO = Path(__file__).resolve().parents[2]
LINK_RE = re.compile(r"^(https?://\S+/v1/invite#\S+)$", re.M)


@pytest.fixture(scope="module", autouse=True)
def relay_log() -> Iterator[None]:
    """Overrides the package's in-process log check: this module's relay is a subprocess
    (its output is checked in ``relay``)."""
    yield


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    tmp = tmp_path_factory.mktemp("blindchat-relay")
    env = with_repo_path({k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")})
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    proc = RelayProcess(tmp / "data", env, tmp / "relay.log")
    proc.start()
    yield proc
    proc.stop()
    lines = [ln for ln in proc.log_text().splitlines() if not is_banner(ln)]
    assert not re.search(r"\b127\.0\.0\.1\b", "\n".join(lines))


def with_repo_path(env: dict[str, str]) -> dict[str, str]:
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def chat_env() -> dict[str, str]:
    env = with_repo_path({k: v for k, v in os.environ.items() if not k.startswith("BLINDCHAT_")})
    env["BLINDCHAT_PASSPHRASE"] = PASS
    env["PYTHONUNBUFFERED"] = "1"
    return env


def blindchat(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "clientlib.chat", "--home", str(home), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=chat_env(),
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    assert PASS not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def ok(home: Path, *args: str) -> str:
    done = blindchat(home, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def pair(tmp_path: Path, relay: RelayProcess, *, intro: str = "hi, it's Bob") -> tuple[Path, Path]:
    """Alice and Bob, contacts of each other."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    url = relay.url.rstrip("/")
    for home, name in ((alice, "alice"), (bob, "bob")):
        out = ok(home, "init", "--relay", url, "--name", name, "--kdf", "minimum")
        assert f"created keystore: {home / 'keystore'}" in out

    out = ok(alice, "invite")
    match = LINK_RE.search(out)
    assert match, out
    link = match.group(1)
    assert "\u2588" in out  # the QR code is drawn even though stdout is a pipe

    out = ok(bob, "accept", link, "--intro", intro)
    assert re.search(r"^contact request sent; contact id: [0-9a-f]{8}$", out, re.M), out

    out = ok(alice, "requests")
    found = re.search(r"^request ([0-9a-f]{8})  from bob$", out, re.M)
    assert found, out
    assert f"  intro: {intro}" in out
    assert re.search(r"^  safety number: (\d{5} ){11}\d{5}$", out, re.M)

    out = ok(alice, "requests", "accept", found.group(1))
    assert re.search(r"^accepted bob; contact id: [0-9a-f]{8}$", out, re.M), out
    return alice, bob


@pytest.mark.slow  # about 14 CLI runs of ~0.7 s each (interpreter start-up and imports)
def test_invite_accept_send_history(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)

    assert ok(bob, "send", "alice", "hello") == "sent to alice\n"
    out = ok(alice, "history", "bob")
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d\] bob: hello\n", out), out

    out = ok(bob, "contacts")
    assert re.search(r"^[0-9a-f]{8}  accepted  unverified  -        alice$", out, re.M), out
    out = ok(bob, "history", "alice")
    assert re.search(r"\] you: hello$", out, re.M), out

    # The safety numbers agree on both sides; verifying is recorded locally.
    a_num = ok(alice, "verify", "bob", "--no-qr").splitlines()[1:4]
    b_num = ok(bob, "verify", "alice", "--confirm").splitlines()[1:4]
    assert a_num == b_num
    assert all(re.fullmatch(r"  (\d{5} ){3}\d{5}", row) for row in a_num)
    assert re.search(r"  verified    -        alice$", ok(bob, "contacts", "--offline"), re.M)


class Lines:
    """A subprocess's stdout, line by line, with timeouts."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.q.put(raw.decode("utf-8").rstrip("\n"))
        self.q.put(None)

    def expect(self, needle: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {needle!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"output ended without {needle!r}: {self.seen}")
            self.seen.append(line)
            if needle in line:
                return line

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """End of input; wait for the exit; the exit status and stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.pump.join(10)
        err = self.proc.stderr.read().decode()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code, err


def start_listen(home: Path, to: str) -> tuple[subprocess.Popen[bytes], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clientlib.chat", "--home", str(home), "listen", "--to", to],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=chat_env(),
        cwd=REPO,
    )
    return proc, Lines(proc)


def type_line(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text.encode() + b"\n")
    proc.stdin.flush()


def test_listen_sessions_chat_over_pipes(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)
    # Sent while Bob is offline: shown when his listen session starts.
    assert ok(alice, "send", "bob", "waiting for you") == "sent to bob\n"

    a, a_out = start_listen(alice, "bob")
    b, b_out = start_listen(bob, "alice")
    try:
        a_out.expect("* listening as alice on ")
        header = b_out.expect("* listening as bob on ")
        assert header.endswith("; lines you type go to alice (/help, Ctrl-C to quit)")
        assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] alice: waiting for you", b_out.expect("alice:"))

        type_line(b, "hi alice")
        assert a_out.expect("bob:").endswith("] bob: hi alice")
        type_line(a, "hi bob, ünïcödé ✓")
        assert b_out.expect("alice:").endswith("] alice: hi bob, ünïcödé ✓")
        type_line(a, "//slash")
        assert b_out.expect("alice:").endswith("] alice: /slash")
        # While a session holds the keystore, other commands get a clear error (exit 74).
        done = blindchat(alice, "contacts")
        assert (done.returncode, done.stdout) == (EXIT_KEYSTORE, "")
        assert done.stderr.startswith("blindchat: keystore is in use by another blindchat process")

        type_line(b, "/contacts")
        assert re.fullmatch(r"\* [0-9a-f]{8}  accepted  alice", b_out.expect("accepted"))
        type_line(b, "last words")  # sent just before end of input: still delivered
    finally:
        results = [b_out.finish(), a_out.finish()]
    assert results == [(0, ""), (0, "")]
    out = ok(alice, "history", "bob", "-n", "3")
    # Bob's session displayed Alice's lines, so read receipts are owed: each arrives after
    # its random delay (issue 13), or waits in Bob's keystore for his next run.
    lines = [
        re.sub(r"  \((delivered|read)\)$", "", ln.split("] ", 1)[1]) for ln in out.splitlines()
    ]
    assert lines == [
        "you: hi bob, ünïcödé ✓",
        "you: /slash",
        "bob: last words",
    ]


def test_block_unblock_and_export(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)
    assert ok(bob, "send", "alice", "hello") == "sent to alice\n"

    out = ok(alice, "block", "bob")
    assert out.startswith("blocked bob: the relay now refuses their messages"), out
    assert re.search(
        r"^[0-9a-f]{8}  accepted  unverified  blocked  bob$", ok(alice, "contacts"), re.M
    )
    # To Bob it looks as if Alice had deleted the conversation.
    done = blindchat(bob, "send", "alice", "are you there?")
    assert (done.returncode, done.stdout) == (EXIT_FAILED, "")  # refused, not unreachable
    assert done.stderr.rstrip().splitlines()[-1] == (
        "blindchat: the relay refused the message: alice's mailbox no longer exists"
    )
    done = blindchat(alice, "send", "bob", "hi")  # blocked both ways
    assert (done.returncode, done.stderr) == (
        1,
        "blindchat: the contact is blocked; unblock it first\n",
    )

    assert ok(alice, "unblock", "bob") == "unblocked bob: their messages reach you again\n"
    assert re.search(
        r"^[0-9a-f]{8}  accepted  unverified  -        bob$", ok(alice, "contacts"), re.M
    )
    assert ok(bob, "send", "alice", "back again") == "sent to alice\n"

    # The same from inside a listen session.
    a, a_out = start_listen(alice, "bob")
    try:
        a_out.expect("* listening as alice on ")
        type_line(a, "/block bob")
        assert a_out.expect("* blocked").startswith(
            "* blocked bob: the relay refuses their messages"
        )
        type_line(a, "/contacts")
        assert re.fullmatch(r"\* [0-9a-f]{8}  accepted  bob  \(blocked\)", a_out.expect("accepted"))
        type_line(a, "/unblock bob")
        assert a_out.expect("* unblocked") == "* unblocked bob: their messages arrive again"
    finally:
        assert a_out.finish() == (0, "")
    assert ok(bob, "send", "alice", "third") == "sent to alice\n"

    out = ok(alice, "privacy", "bob", "--media", "off")
    assert (
        out.splitlines()[0] == "your privacy settings with bob: receipts on, typing on, media off"
    )
    out = ok(bob, "privacy", "alice")
    assert "  theirs: receipts on, typing on, media off\n" in out, out

    target = tmp_path / "alice-export.json"
    out = ok(alice, "export", str(target))
    assert out.splitlines()[0] == (
        f"exported 1 conversation (3 messages) and 0 pending requests to {target}"
    )
    doc = json.loads(target.read_text(encoding="utf-8"))
    [conv] = doc["contacts"]
    assert (conv["name"], conv["state"], conv["blocked"]) == ("bob", "accepted", False)
    assert conv["settings"] == {"receipts": True, "typing": True, "media": False}
    assert [(m["direction"], m["text"]) for m in conv["messages"]] == [
        ("in", "hello"),
        ("in", "back again"),
        ("in", "third"),
    ]
    done = blindchat(alice, "export", str(target))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"blindchat: {target} already exists; refusing to overwrite it\n"


def test_boundaries_holdings_and_delete_account(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob, carol = tmp_path / "alice", tmp_path / "bob", tmp_path / "carol"
    url = relay.url.rstrip("/")
    for home, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        ok(home, "init", "--relay", url, "--name", name, "--kdf", "minimum")
    link = LINK_RE.search(ok(alice, "invite", "--no-qr"))
    assert link
    out = ok(alice, "boundaries", "set", "--pow", "8", "--per-day", "1")
    assert out.splitlines() == [
        "your contact addresses now publish:",
        "  largest request:  4096 bytes",
        "  attachments:      off",
        "  requests per day: 1",
        "  proof of work:    8 bits",
    ]
    out = ok(alice, "boundaries")  # as the relay reports them, from a new process
    assert "  proof of work:    8 bits\n" in out and "  requests per day: 1\n" in out, out

    # A request pays the proof of work and still gets through.
    out = ok(bob, "accept", link.group(1), "--intro", "hi")
    assert out.startswith("contact request sent; contact id: "), out
    assert re.search(r"^request [0-9a-f]{8}  from bob$", ok(alice, "requests"), re.M)
    # The second one today is over the allowance: a clear error, and nothing is kept.
    done = blindchat(carol, "accept", link.group(1))
    assert (done.returncode, done.stdout) == (EXIT_FAILED, "")  # refused, not unreachable
    assert done.stderr == (
        "blindchat: the relay refused the contact request: daily limit reached (try again tomorrow)\n"
    )
    assert ok(carol, "contacts").startswith("no contacts yet")
    # An oversized request never leaves the client.
    ok(alice, "boundaries", "set", "--size", "2048", "--per-day", "100")
    done = blindchat(carol, "accept", link.group(1), "--intro", "x" * 1000)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "blindchat: cannot send this request: the address accepts requests up to 2048 bytes; "
        "shorten the intro\n"
    )

    out = ok(alice, "holdings")
    assert re.match(
        r"what the relay at http://\S+ keeps for your 1 mailbox \(days in UTC\):\n", out
    )
    assert "\naddress 1:\n  kind:                addr (contact address)\n" in out
    assert "  contact requests:    1 on " in out and "(1 today)" in out
    assert (
        "  boundaries:          up to 2048 bytes, attachments off, 100 a day, proof of work 8 bits"
        in out
    )
    # Bob's request was fetched (`requests`), so the relay keeps only its counters.
    assert "  last sequence:       1\n  envelopes stored:    0 (0 bytes)\n" in out, out

    done = blindchat(alice, "delete-account")  # stdin is not a terminal: add --yes
    assert (done.returncode, done.stdout) == (EXIT_USAGE, "")
    assert (alice / "keystore").exists()
    out = ok(alice, "delete-account", "--yes")
    assert (
        out.splitlines()[-1] == f"deleted the keystore {alice / 'keystore'} and its message history"
    )
    assert out.splitlines()[-2].startswith("Reports you filed are not deleted: they stay with")
    assert sorted(p.name for p in alice.iterdir()) == []
    done = blindchat(alice, "holdings")
    assert (done.returncode, done.stdout) == (EXIT_KEYSTORE, "")
    assert done.stderr == (
        f"blindchat: no keystore at {alice / 'keystore'}; run `blindchat --home {alice} init`\n"
    )
    # The invitation died with the account.
    done = blindchat(carol, "accept", link.group(1))
    assert (done.returncode, done.stderr) == (
        1,
        "blindchat: this invitation is no longer valid (the relay does not know it)\n",
    )


def test_report_a_contact_request(tmp_path: Path, relay: RelayProcess) -> None:
    """Issue 20, finding 5: a contact request (the abuse on a published address) is
    reported from blindchat, verified by the relay, and declined."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    url = relay.url.rstrip("/")
    for home, name in ((alice, "alice"), (bob, "bob")):
        ok(home, "init", "--relay", url, "--name", name, "--kdf", "minimum")
    link = LINK_RE.search(ok(alice, "invite", "--no-qr"))
    assert link, "no link"
    ok(bob, "accept", link.group(1), "--intro", "answer me or else")
    out = ok(alice, "requests")
    found = re.search(r"^request ([0-9a-f]{8})  from bob$", out, re.M)
    assert found, out
    assert re.search(
        rf"^  report:  blindchat .*requests report {found.group(1)} REASON$", out, re.M
    )
    done = blindchat(alice, "requests", "report", found.group(1), "rude")
    assert done.returncode != 0 and "invalid choice" in done.stderr
    out = ok(alice, "requests", "report", found.group(1), "threats", "--note", "on my address")
    assert re.search(
        rf"^reported request {found.group(1)} as threats; report [0-9a-f]{{12}}$", out, re.M
    ), out
    assert "declined it too" in out
    report_id = re.search(r"report ([0-9a-f]{12})$", out, re.M).group(1)  # type: ignore[union-attr]
    assert ok(alice, "requests").startswith("no pending contact requests")
    # `reports` shows the reason, and the outcome once a moderator decided (issue 22, snag 8).
    day = r"\d{4}-\d{2}-\d{2}"
    assert re.search(
        rf"^{report_id}  {day}  threats\s+request on address [0-9a-f]{{8}}  open: waiting for "
        r"a moderator$",
        ok(alice, "reports"),
        re.M,
    )
    env = with_repo_path({k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")})
    resolve = ["reports", "resolve", report_id, "--action", "suspend", "--suspend-link"]
    where = ["--data-dir", str(relay.data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "relay", "admin", *resolve, link.group(1), *where],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        rf"^{report_id}  {day}  threats\s+request on address [0-9a-f]{{8}}  resolved: the "
        r"sender's address was suspended$",
        ok(alice, "reports"),
        re.M,
    )
