"""Abuse reports through clientlib.Client against a real relay (both backends): a genuine
message is reported with the evidence the client kept, verified by the relay, resolved by a
moderator with a revocation, and the reporter learns the outcome."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from reportkit import FAST, befriend, make, report_abuse, wait_for

import clientlib.session.session as session_module
from clientlib.client import Client, ClientWarning, MessageReceived, ReportResolved
from clientlib.errors import LocalProtocolError, RelayRejected
from relay.amf import judge_key
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


# --- issue 20, finding 2: a sender making a shown message unreportable -----------------


@pytest.mark.parametrize("attack", ["random sigma", "other moderator", "attachment"])
async def test_an_unreportable_message_is_never_shown(
    tmp_path: Path, relay_app: TestServer, monkeypatch: pytest.MonkeyPatch, attack: str
) -> None:
    """The abuser's client is altered to send a message no report could verify: a random
    ``sigma``, a ``sigma`` for another moderator key (a valid proof whose ``J`` is no DH
    tuple for the recipient's relay key), or a commitment to an attachment it never
    provides. The victim's client drops it (a warning, no message); the abuser's next
    honest message is shown and its report verifies."""
    url = str(relay_app.make_url("/"))
    moderation = relay_app.app[service_key].moderation
    async with make(tmp_path, "vic", url) as victim, make(tmp_path, "abe", url) as abuser:
        v_a, a_v = await befriend(victim, abuser)
        real_frank = session_module.frank
        real_encrypt = session_module.Session.encrypt

        def bad_frank(identity, sender, recipient, m, kid, fc, *, rng):  # type: ignore[no-untyped-def]
            if attack == "random sigma":
                return rng(448)
            other = judge_key(b"\x01" * 32).public
            return real_frank(identity, sender, recipient, other, kid, fc, rng=rng)

        def with_attachment(self, plaintext, **kw):  # type: ignore[no-untyped-def]
            kw["attachment_hashes"] = [os.urandom(32)]
            return real_encrypt(self, plaintext, **kw)

        if attack == "attachment":
            monkeypatch.setattr(session_module.Session, "encrypt", with_attachment)
        else:
            monkeypatch.setattr(session_module, "frank", bad_frank)
            # The altered client signs on the spot: no signature prepared ahead (the honest
            # one made after its first message, its privacy settings, §22.6) is used.
            monkeypatch.setattr(abuser._ops, "warm", lambda cid: None)
            async with asyncio.timeout(10):
                while abuser._ops._warming:  # a preparation under way lands first
                    await asyncio.sleep(0.01)
            abuser._ops.forget_prepared(bytes.fromhex(a_v))
        await abuser.send(a_v, "you cannot report this")
        kind = "unreportable" if attack == "attachment" else "undecryptable"
        await wait_for(victim, ClientWarning, lambda w: w.kind == kind)
        monkeypatch.undo()
        assert not [m for m in victim.messages(v_a) if m.direction == "in"]
        await abuser.send(a_v, "but this one you can")
        got = await wait_for(victim, MessageReceived, lambda e: e.message.text.startswith("but"))
        report_id = await victim.report(got.message, "harassment")
        view = await moderation.get_report(report_id)
        assert view is not None and view.verified["sender"].startswith("AMF signature verified")
        assert [m.text for m in victim.messages(v_a) if m.direction == "in"] == [
            "but this one you can"
        ]
