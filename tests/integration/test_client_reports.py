"""Abuse reports through clientlib.Client against a real relay (both backends): a genuine
message is reported with the evidence the client kept, verified by the relay, resolved by a
moderator with a revocation, and the reporter learns the outcome."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from reportkit import FAST, befriend, make, report_abuse, wait_for

from clientlib.client import Client, ClientWarning, MessageReceived, ReportResolved
from clientlib.errors import LocalProtocolError, RelayRejected
from relay.app import create_app
from relay.appkeys import service_key
from relay.config import RelayConfig


@pytest.fixture
async def relay_app(relay_config: RelayConfig) -> object:
    server = TestServer(create_app(relay_config), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_report_verified_resolved_and_outcome_delivered(
    tmp_path: Path, relay_app: TestServer
) -> None:
    url = str(relay_app.make_url("/"))
    moderation = relay_app.app[service_key].moderation
    async with make(tmp_path, "vic", url) as victim, make(tmp_path, "abe", url) as abuser:
        rep = await report_abuse(victim, abuser, "you will regret this", reason="threats")
        view = await moderation.get_report(rep.report_id)
        assert view is not None and view.status == "open"
        assert view.text == "you will regret this" and view.reason == "threats"
        assert view.source_kind == "capability"
        assert view.verified["commitment"] == "verified"
        assert view.verified["relay_tag"] == "verified"
        # The same message cannot be reported twice.
        (msg,) = [m for m in victim.messages(rep.victim_contact) if m.direction == "in"]
        with pytest.raises(RelayRejected) as dup:
            await victim.report(msg, "threats")
        assert dup.value.code == "DUPLICATE"
        # Our own messages are not reportable.
        await victim.send(rep.victim_contact, "stop")
        out = [m for m in victim.messages(rep.victim_contact) if m.direction == "out"]
        with pytest.raises(LocalProtocolError):
            await victim.report(out[0], "spam")
        # The moderator revokes the abuser's capability: the abuser can no longer reach her.
        await moderation.resolve(rep.report_id, action="revoke", moderator="test")
        await abuser.send(rep.abuser_contact, "hello?")
        warn = await wait_for(abuser, ClientWarning, lambda w: w.kind == "mailbox_lost")
        assert warn.detail == "AUTH"
        await victim.check_reports()
        resolved = await wait_for(victim, ReportResolved)
        assert resolved.report_id == rep.report_id and resolved.action == "revoke"
        assert victim.reports() == [(rep.report_id, rep.victim_contact, "resolved")]


async def test_evidence_survives_a_restart(tmp_path: Path, relay_app: TestServer) -> None:
    url = str(relay_app.make_url("/"))
    async with make(tmp_path, "vic", url) as victim, make(tmp_path, "abe", url) as abuser:
        v_a, a_v = await befriend(victim, abuser)
        await abuser.send(a_v, "something awful")
        await wait_for(victim, MessageReceived)
    async with Client.open(
        tmp_path / "vic.keystore", b"pw-vic long test passphrase", config=FAST
    ) as victim2:
        (msg,) = victim2.messages(v_a)
        report_id = await victim2.report(msg, "harassment", note="kept for days")
        view = await relay_app.app[service_key].moderation.get_report(report_id)
        assert view is not None and view.note == "kept for days"
        assert view.text == "something awful"
