"""blindchat groups (issue 14): the real CLI as subprocesses against a live relay process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from liverelay import RelayProcess
from test_blindchat import blindchat, ok, pair
from test_blindchat import relay as relay  # noqa: PLC0414 - the module's relay fixture
from test_blindchat import relay_log as relay_log  # noqa: PLC0414

from clientlib.chat.cli import EXIT_FAILED


@pytest.mark.slow  # 18 CLI runs of ~0.7 s each on an idle machine (interpreter start-up)
def test_group_commands(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)
    out = ok(alice, "group", "create", "team")
    assert re.search(r"^created group team \(id [0-9a-f]{12}\)$", out, re.M), out
    assert "until they accept" in ok(alice, "group", "invite", "team", "bob")
    out = ok(bob, "group", "requests")
    found = re.search(r"^([0-9a-f]{12})  team  \(from alice\)$", out, re.M)
    assert found, out
    assert "joining team" in ok(bob, "group", "accept", found.group(1))
    out = ok(alice, "group", "members", "team")  # alice's side adds bob and welcomes him
    assert "team: 2 members, you are owner (active)" in out, out
    out = ok(bob, "group", "members", "team")
    assert re.search(r"^  alice  owner  ", out, re.M) and "(you)" in out, out
    assert ok(bob, "group", "send", "team", "hello", "all") == "sent to team\n"
    out = ok(alice, "group", "messages", "team")
    assert out.splitlines()[-1] == "[team] bob: hello all", out
    # Report it (protocol.md §26.9): by the id `group messages --ids` shows.
    out = ok(alice, "group", "messages", "team", "--ids")
    mid = re.search(r"^([0-9a-f]{8})  \[team\] bob: hello all$", out, re.M)
    assert mid, out
    out = ok(alice, "group", "report", "team", mid.group(1), "spam", "--note", "test")
    assert re.search(
        rf"^reported group message {mid.group(1)} as spam; report [0-9a-f]{{12}}$", out, re.M
    ), out
    out = ok(alice, "reports")
    assert "spam" in out and "message in group" in out and "open: waiting" in out, out
    again = blindchat(alice, "group", "report", "team", mid.group(1), "spam")
    assert again.returncode == EXIT_FAILED and "DUPLICATE" in again.stderr.upper(), again.stderr
    # A file: uploaded once, shown with its id, downloaded by that id.
    f = tmp_path / "notes.bin"
    f.write_bytes(bytes(range(256)) * 40)
    out = ok(bob, "group", "send", "team", "see", "this", "--file", str(f))
    sent = re.search(r"^sent \[notes\.bin, [^,]+, id ([0-9a-f]{4})\] to team$", out, re.M)
    assert sent, out
    out = ok(alice, "group", "messages", "team")
    assert out.splitlines()[-1].startswith("[team] bob: see this [notes.bin, "), out
    (tmp_path / "dl").mkdir()
    out = ok(alice, "group", "download", "team", sent.group(1), "--out", str(tmp_path / "dl"))
    assert out.startswith("saved [notes.bin"), out
    assert (tmp_path / "dl" / "notes.bin").read_bytes() == f.read_bytes()
    assert "relay now refuses" in ok(alice, "group", "remove", "team", "bob")
    done = blindchat(bob, "group", "send", "team", "still here")
    assert done.returncode == EXIT_FAILED, (done.stdout, done.stderr)
    assert "refused" in done.stderr
    out = ok(bob, "group", "list")
    assert re.search(r"  team  1 members  none  removed$", out, re.M), out
