"""``blindrelay admin``: the moderation queue from a shell, against the store of a relay that
keeps running (both backends), with genuine reports filed by two ``clientlib.Client``s. The
CLI runs in this process (on a thread, with its own store connections) and as a process of
its own, next to the relay writing the same SQLite file (WAL, busy timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from liverelay import ROOT, RelayProcess, free_port
from reportkit import (
    ADMIN_TOKENS,
    ALICE_TOKEN,
    BOB_TOKEN,
    Reported,
    deposit_as_abuser,
    make,
    report_abuse,
    wait_for,
)

from clientlib.client import ClientWarning
from clientlib.errors import RelayRejected
from clientlib.transport import HTTPTransport
from relay.cli import main
from relay.config import RelayConfig

ANSI = "\x1b[31mred\x1b[0m and \u202eevil"


@pytest.fixture
def relay_env(relay_config: RelayConfig) -> dict[str, str]:
    """The environment the CLI runs with: the running relay's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    env["BLINDRELAY_DATA_DIR"] = relay_config.data_dir
    env["BLINDRELAY_STORAGE"] = relay_config.storage
    if relay_config.storage == "redis":
        env["BLINDRELAY_REDIS_URL"] = relay_config.redis_url
    return env


@pytest.fixture
async def reported(tmp_path: Path, relay: str) -> AsyncIterator[Reported]:
    url = relay.rstrip("/")
    async with make(tmp_path, "vic", url) as victim, make(tmp_path, "eve", url) as abuser:
        yield await report_abuse(victim, abuser, ANSI + "\nsecond line", note="see <this>")


async def cli(
    env: dict[str, str], *args: str, monkeypatch: pytest.MonkeyPatch | None = None
) -> tuple[int, str, str]:
    """Run ``blindrelay ARGS`` in this process (on a thread with its own event loop)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    with pytest.MonkeyPatch.context() as mp:
        for k in [k for k in os.environ if k.startswith("BLINDRELAY_")]:
            mp.delenv(k)
        for k, v in env.items():
            if k.startswith("BLINDRELAY_") or k == "USER":
                mp.setenv(k, v)
        return await asyncio.to_thread(run)


async def cli_process(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``python -m relay ARGS`` as its own process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_list_show_resolve_and_audit(
    relay_env: dict[str, str], reported: Reported, tmp_path: Path
) -> None:
    env = {**relay_env, "USER": "mod1"}
    rid = reported.report_id
    # A second report, about another message of the same conversation.
    second = await report_abuse(
        reported.victim,
        reported.abuser,
        "spam spam",
        reason="spam",
        contacts=(reported.victim_contact, reported.abuser_contact),
    )
    code, out, _ = await cli(env, "admin", "reports", "list")
    assert code == 0 and rid[:12] in out and second.report_id[:12] in out
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[31mred" in out
    code, out, _ = await cli(env, "admin", "reports", "list", "--json")
    listed = {r["id"]: r for r in json.loads(out)}
    assert set(listed) == {rid, second.report_id}
    first = listed[rid]
    assert first["text"] == ANSI + "\nsecond line" and first["reason"] == "harassment"
    assert first["note"] == "see <this>" and first["status"] == "open"
    assert first["verified_all"] is True
    assert len(first["sender_key"]) == 64 and first["sender_key"] != first["recipient_key"]
    # show, by a prefix; text with its control characters escaped.
    code, out, _ = await cli(env, "admin", "reports", "show", rid[:8])
    assert code == 0 and rid in out and "verified:" in out and "  | second line" in out
    assert "\x1b" not in out and "\\u202eevil" in out
    code, out, _ = await cli(env, "admin", "reports", "show", rid, "--json")
    assert code == 0 and json.loads(out)["id"] == rid
    # Resolve with "revoke" while the relay process runs; the abuser is cut off at once.
    await deposit_as_abuser(reported)  # still allowed
    code, out, err = await cli(
        env, "admin", "reports", "resolve", rid[:10], "--action", "revoke", "--note", "bye"
    )
    assert code == 0, err
    assert f"resolved {rid}" in out
    with pytest.raises(RelayRejected) as info:
        await deposit_as_abuser(reported)
    assert info.value.code == "AUTH"
    # Resolving again is refused; nothing changes.
    code, _, err = await cli(env, "admin", "reports", "resolve", rid, "--action", "none")
    assert code == 1 and err.startswith("blindrelay admin: ")
    code, out, _ = await cli(env, "admin", "reports", "list", "--json")
    assert [r["id"] for r in json.loads(out)] == [second.report_id]
    code, out, _ = await cli(env, "admin", "reports", "list", "--all", "--json")
    done = {r["id"]: r for r in json.loads(out)}[rid]
    assert done["status"] == "resolved" and done["action"] == "revoke"
    assert done["moderator"] == "cli:mod1" and done["resolution_note"] == "bye"
    code, out, _ = await cli(env, "admin", "audit", "--json")
    entries = [
        a for a in json.loads(out) if a["report_id"] == rid and a["action"] == "resolve:revoke"
    ]
    assert len(entries) == 1 and entries[0]["moderator"] == "cli:mod1"
    code, out, _ = await cli(env, "admin", "audit", "--limit", "1")
    assert code == 0 and len(out.strip().splitlines()) == 1
    # The victim's client learns the outcome.
    await reported.victim.check_reports()
    assert (rid, reported.victim_contact, "resolved") in reported.victim.reports()


async def test_suspend_by_invitation_link(
    relay_env: dict[str, str], reported: Reported, relay: str
) -> None:
    # The abuser's public contact address, e.g. posted to spam people.
    inv = await reported.abuser.create_invitation()
    async with aiohttp.ClientSession() as s:
        http = HTTPTransport(s, relay)
        await http.boundaries(inv.sid)
        code, out, err = await cli(
            {**relay_env, "USER": "mod2"},
            "admin",
            "reports",
            "resolve",
            reported.report_id,
            "--action",
            "suspend",
            "--suspend-link",
            inv.link,
            "--moderator",
            "carol",
        )
        assert code == 0, err
        with pytest.raises(RelayRejected) as info:
            await http.boundaries(inv.sid)
        assert info.value.code == "AUTH"
    code, out, _ = await cli(relay_env, "admin", "audit", "--json")
    assert any(
        a["moderator"] == "carol" and a["action"] == "resolve:suspend" for a in json.loads(out)
    )


async def test_errors_and_exit_codes(
    relay_env: dict[str, str], reported: Reported, tmp_path: Path
) -> None:
    rid = reported.report_id
    env = relay_env
    for ref in ("abc", "zzzzzzzz", "0" * 32, "f" * 6 if not rid.startswith("f" * 6) else "e" * 6):
        code, out, err = await cli(env, "admin", "reports", "show", ref)
        assert code == 1 and out == "" and "blindrelay admin:" in err, ref
    for args in (
        ("reports", "resolve", rid, "--action", "suspend"),
        ("reports", "resolve", rid, "--action", "revoke", "--suspend-sid", "00" * 16),
        ("reports", "resolve", rid, "--action", "delete"),
        ("reports", "resolve", rid),
        ("reports", "resolve", rid, "--action", "none", "--moderator", ""),
        (
            "reports",
            "resolve",
            rid,
            "--action",
            "suspend",
            "--suspend-sid",
            "a",
            "--suspend-link",
            "b",
        ),
        ("audit", "--limit", "0"),
        ("reports",),
        ("frobnicate",),
    ):
        code, _, _ = await cli(env, "admin", *args)
        assert code == 2, args
    code, _, err = await cli(
        env, "admin", "reports", "resolve", rid, "--action", "suspend", "--suspend-sid", "xyz"
    )
    assert code == 1 and "send id" in err
    code, out, _ = await cli(env, "admin", "reports", "list", "--json")
    assert json.loads(out)[0]["status"] == "open"  # none of that changed anything
    # Configuration and storage errors, as for `serve`.
    code, _, err = await cli({**env, "BLINDRELAY_PORT": "x"}, "admin", "reports", "list")
    assert code == 78 and "port" in err
    if env.get("BLINDRELAY_STORAGE") != "redis":
        empty = {**env, "BLINDRELAY_DATA_DIR": str(tmp_path / "nothing")}
        code, _, err = await cli(empty, "admin", "reports", "list")
        assert code == 69 and "no database" in err
        assert not (tmp_path / "nothing").exists()  # the CLI creates no database
    else:
        gone = {**env, "BLINDRELAY_REDIS_URL": "redis://127.0.0.1:1/0"}
        code, _, err = await cli(gone, "admin", "reports", "list")
        assert code == 69 and "storage unavailable" in err


async def test_a_second_process_while_the_relay_writes(
    relay_env: dict[str, str], reported: Reported
) -> None:
    """The CLI as its own process, reading and resolving while the relay process stores and
    deletes envelopes as fast as two clients make it (SQLite: two writers, one WAL)."""
    victim, abuser = reported.victim, reported.abuser
    v_a, a_v = reported.victim_contact, reported.abuser_contact
    stop = asyncio.Event()

    async def chatter() -> int:
        n = 0
        while not stop.is_set():
            await abuser.send(a_v, f"m{n}")
            await victim.send(v_a, f"r{n}")
            n += 1
            await asyncio.sleep(0)
        return n

    task = asyncio.create_task(chatter())
    try:
        results = await asyncio.gather(
            cli_process(relay_env, "admin", "reports", "list", "--json"),
            cli_process(relay_env, "admin", "audit", "--json"),
            cli_process(relay_env, "admin", "reports", "show", reported.report_id[:6]),
        )
        for code, _, err in results:
            assert code == 0, err
        assert json.loads(results[0][1])[0]["id"] == reported.report_id
        code, _, err = await cli_process(
            relay_env, "admin", "reports", "resolve", reported.report_id, "--action", "revoke"
        )
        assert code == 0, err
    finally:
        stop.set()
        sent = await task
    assert sent > 0
    await abuser.send(a_v, "after the revocation")
    warn = await wait_for(abuser, ClientWarning, lambda w: w.kind == "mailbox_lost")
    assert warn.detail == "AUTH"


async def test_serve_starts_the_admin_listener_only_with_tokens(tmp_path: Path) -> None:
    """``blindrelay serve`` as a process: the moderation page listens on ``admin_port``
    when tokens are configured (here from ``BLINDRELAY_ADMIN_TOKENS_FILE``), never on the
    public port, and nothing listens there without tokens; tokens never reach the output."""
    tokens = tmp_path / "admin_tokens"
    tokens.write_text(ADMIN_TOKENS + "\n")
    admin_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLINDRELAY_")}
    env["BLINDRELAY_LOG_FORMAT"] = "json"
    env["BLINDRELAY_ADMIN_PORT"] = str(admin_port)
    admin_env = {**env, "BLINDRELAY_ADMIN_TOKENS_FILE": str(tokens)}
    relay = RelayProcess(tmp_path / "data", admin_env, tmp_path / "relay.log")
    await asyncio.to_thread(relay.start)
    try:
        # JSON logs (BLINDRELAY_LOG_FORMAT=json): every line is JSON, the banner included.
        events = [json.loads(ln) for ln in relay.log_text().splitlines()]
        assert any(
            e.get("event") == "admin_listening"
            and e.get("listen") == f"http://blindrelay-admin.localhost:{admin_port}/admin/"
            for e in events
        )
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"http://127.0.0.1:{admin_port}/admin/login",
                headers={"Host": f"blindrelay-admin.localhost:{admin_port}"},
            ) as r:
                assert r.status == 200 and 'name="token"' in await r.text()
            async with http.get(relay.url + "admin/login") as r:
                assert r.status == 404
    finally:
        await asyncio.to_thread(relay.stop)
    assert ALICE_TOKEN not in relay.log_text() and BOB_TOKEN not in relay.log_text()
    # Without tokens: no listener, no line.
    plain = RelayProcess(tmp_path / "data2", env, tmp_path / "plain.log")
    await asyncio.to_thread(plain.start)
    try:
        assert "admin_listening" not in plain.log_text()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", admin_port), 1):
            pass
    finally:
        await asyncio.to_thread(plain.stop)
