"""blindchat files (issue 12): ``send --file``, ``/file`` inside ``listen``, the
``[name, size, id]`` label, ``download``; the real CLI as subprocesses against a live relay."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from liverelay import RelayProcess
from mediakit import gps_jpeg
from PIL import Image
from test_blindchat import blindchat, ok, pair, start_listen, type_line
from test_blindchat import relay as relay  # noqa: PLC0414 - the module's relay fixture
from test_blindchat import relay_log as relay_log  # noqa: PLC0414

from clientlib.chat.cli import EXIT_FAILED, EXIT_USAGE

LABEL = re.compile(r"\[([^,\]]+), ([0-9.]+ [kMG]?B), (?:view-once, )?id ([0-9a-f]{4})\]")


@pytest.mark.slow  # about 10 CLI runs of ~0.7 s each (interpreter start-up)
def test_send_list_and_download_files(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(gps_jpeg(size=(120, 80)))
    out = ok(alice, "send", "bob", "--file", str(photo), "--caption", "from the beach")
    assert re.fullmatch(r"sent \[photo\.jpg, [0-9.]+ k?B, id [0-9a-f]{4}\] to bob\n", out), out
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1_200_000))
    done = blindchat(alice, "send", "bob", "--file", str(big), "--view-once")
    assert done.returncode == 0, done.stderr
    assert "view-once" in done.stdout and "upload" in done.stderr  # the progress bar

    history = ok(bob, "history", "alice")
    labels = LABEL.findall(history)
    assert [(n, s) for n, s, _ in labels] == [("photo.jpg", labels[0][1]), ("big.bin", "1.2 MB")]
    assert "from the beach" in history
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    out = ok(bob, "download", "alice", labels[0][2], "--out", str(downloads))
    assert "saved [photo.jpg" in out
    with Image.open(downloads / "photo.jpg") as img:
        assert len(img.getexif()) == 0
    out = ok(bob, "download", "alice", labels[1][2], "--out", str(downloads))
    assert "view-once" in out
    assert (downloads / "big.bin").read_bytes() == big.read_bytes()
    done = blindchat(bob, "download", "alice", labels[1][2], "--out", str(downloads))
    assert done.returncode == EXIT_FAILED and "nothing to download" in done.stderr
    assert "view-once, opened" in ok(bob, "history", "alice")

    done = blindchat(bob, "send", "alice", "--view-once", "no", "file")
    assert done.returncode == EXIT_USAGE
    ok(bob, "privacy", "alice", "--media", "off")
    ok(alice, "history", "bob")  # learns Bob's setting
    done = blindchat(alice, "send", "bob", "--file", str(photo))
    assert done.returncode == EXIT_FAILED and "does not accept media" in done.stderr


@pytest.mark.slow
def test_file_command_inside_listen(tmp_path: Path, relay: RelayProcess) -> None:
    alice, bob = pair(tmp_path, relay)
    doc = tmp_path / "notes.txt"
    doc.write_bytes(b"meeting at noon")
    a, a_out = start_listen(alice, "bob")
    b, b_out = start_listen(bob, "alice")
    try:
        a_out.expect("* listening as alice on ")
        b_out.expect("* listening as bob on ")
        type_line(a, f"/file {doc} see attached")
        assert "* sent [notes.txt, 15 B, id " in a_out.expect("* sent [")
        line = b_out.expect("[notes.txt")
        assert re.search(r"alice: \[notes\.txt, 15 B, id [0-9a-f]{4}\] see attached$", line)
    finally:
        for _, lines in ((a, a_out), (b, b_out)):
            lines.finish()
