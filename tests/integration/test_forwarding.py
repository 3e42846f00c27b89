"""Two-hop forwarding against bad input (issue 16, protocol.md §27.3): two in-process relays,
F (forwards for clients) and D (the destination), plus a stranger that is no relay.

Every refusal is a documented code and nothing reaches D: malformed packets, packets sealed
to the wrong key or an unknown key id, destinations that are not relays or not reachable,
private addresses unless the operator allows them, a destination that is F itself, over the
per-connection quota, repeats, missing proof of work, forwarding switched off. D's route keys
rotate with an overlap window.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from clientlib.client._route import RoutedTransport, open_answer, seal_packet, solve_route_pow
from clientlib.errors import KeyValidationError, RelayRejected
from clientlib.transport import HTTPTransport, MailboxCredential
from clientlib.wire.client_frames import Deposit, GetModerationKeys, GetRouteKeys, Route
from clientlib.wire.relay_frames import ErrorReply, Routed, RouteKeysIssued, decode_relay_frame
from relay.config import RelayConfig
from relay.routing import RouteKeys, verify_entry

Base = RelayConfig(purge_interval_s=3600)


async def _relay(make_relay, tmp_path: Path, name: str, **options: object) -> str:  # type: ignore[no-untyped-def]
    url, _ = await make_relay(replace(Base, data_dir=str(tmp_path / name), **options))
    return str(url).rstrip("/")


async def _keys(session: aiohttp.ClientSession, url: str) -> RouteKeysIssued:
    reply = await HTTPTransport(session, url)._request(lambda i: GetRouteKeys(id=i))
    assert isinstance(reply, RouteKeysIssued)
    return reply


async def _route(
    session: aiohttp.ClientSession, f: str, dst: str, pkt: bytes, pwc: int | None = None
):  # type: ignore[no-untyped-def]
    return await HTTPTransport(session, f)._request(
        lambda i: Route(id=i, dst=dst, pkt=pkt, pwc=pwc)
    )


def _sealed(keys: RouteKeysIssued, frame_bytes: bytes) -> tuple[bytes, bytes, bytes]:
    entry = keys.keys[0]
    return seal_packet(entry.kid, entry.key, frame_bytes, os.urandom)


async def _open(reply: object, kr: bytes, epk: bytes) -> object:
    assert isinstance(reply, Routed)
    return decode_relay_frame(open_answer(kr, epk, reply.ans))[1]


async def test_forwarding_and_every_refusal(make_relay, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = await _relay(make_relay, tmp_path, "d")
    f = await _relay(make_relay, tmp_path, "f", forward_allow_private=True)
    async with aiohttp.ClientSession() as s:
        dk = await _keys(s, d)
        fk = await _keys(s, f)
        assert dk.ri != fk.ri and fk.fwd == 1 and fk.fpow == 0
        assert len(dk.keys) == 2 and all(verify_entry(dk.ri, e) for e in dk.keys)
        # F relays D's keys unchanged.
        via = await HTTPTransport(s, f)._request(lambda i: GetRouteKeys(id=i, dst=d))
        assert isinstance(via, RouteKeysIssued) and via.ri == dk.ri and via.keys == dk.keys

        # A public request through F: D answers, sealed for us.
        pkt, kr, epk = _sealed(dk, GetModerationKeys(id=7).encode())
        answer = await _open(await _route(s, f, d, pkt), kr, epk)
        assert type(answer).__name__ == "ModerationKeys" and answer.id == 7  # type: ignore[attr-defined]
        # A deposit to a mailbox D does not know: D's refusal is sealed (F learns nothing).
        dep = Deposit(id=8, sid=os.urandom(16), eid=os.urandom(16), flags=0, ct=bytes(256))
        pkt, kr, epk = _sealed(dk, dep.encode())
        answer = await _open(await _route(s, f, d, pkt), kr, epk)
        assert isinstance(answer, ErrorReply) and answer.code == "AUTH" and answer.id == 8
        # An inner frame D does not answer through /v1/fwd (an ack): sealed MALFORMED.
        pkt, kr, epk = _sealed(
            dk, b"\x01" + bytes.fromhex("82a174a3616b6ba26964 01".replace(" ", ""))
        )
        answer = await _open(await _route(s, f, d, pkt), kr, epk)
        assert isinstance(answer, ErrorReply) and answer.code == "MALFORMED"

        async def refused(code: str, dst: str, pkt: bytes, pwc: int | None = None) -> None:
            with pytest.raises(RelayRejected) as exc:
                await _route(s, f, dst, pkt, pwc)
            assert exc.value.code == code

        good, _, _ = _sealed(dk, GetModerationKeys(id=1).encode())
        # Malformed: another packet version; a packet too short is refused by the schema.
        await refused("MALFORMED", d, b"\x02" + good[1:])
        with pytest.raises(RelayRejected) as exc:
            await _route(s, f, d, b"\x01" * 20)
        assert exc.value.code == "MALFORMED"
        # Sealed to the wrong key: F forwards (the key id is D's), D refuses, F passes the
        # refusal back unchanged.
        wrong = seal_packet(
            dk.keys[0].kid, fk.keys[0].key, GetModerationKeys(id=1).encode(), os.urandom
        )[0]
        await refused("RKEY", d, wrong)
        # A key id D never published: F refuses without forwarding.
        await refused("RKEY", d, b"\x01" + (12345).to_bytes(4, "big") + good[5:])
        # Not a relay: a closed port, a web server that is no relay, not a relay URL.
        closed = f"http://127.0.0.1:{_free_port()}"
        await refused("ROUTE", closed, good)
        stranger = await _stranger()
        try:
            await refused("ROUTE", stranger, good)
        finally:
            await stranger_close()
        for bad in ("file:///etc/passwd", "ftp://relay.example.org", "http://user@x.org", "gopher"):
            await refused("ROUTE", bad, good)
        # A loop: F to itself.
        own, _, _ = _sealed(fk, GetModerationKeys(id=1).encode())
        await refused("ROUTE", f, own)
        # A repeat of a packet already forwarded.
        pkt, _, _ = _sealed(dk, GetModerationKeys(id=2).encode())
        assert isinstance(await _route(s, f, d, pkt), Routed)
        await refused("LIMIT", d, pkt)


async def test_private_addresses_need_the_operator(make_relay, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = await _relay(make_relay, tmp_path, "d")
    f = await _relay(make_relay, tmp_path, "f")  # forward_allow_private = false (default)
    async with aiohttp.ClientSession() as s:
        dk = await _keys(s, d)
        pkt, _, _ = _sealed(dk, GetModerationKeys(id=1).encode())
        port = d.rsplit(":", 1)[1]
        for dst in (d, f"http://localhost:{port}", f"http://[::1]:{port}", f"http://10.0.0.1:{port}",
                    f"http://169.254.169.254:{port}", f"http://192.168.1.1:{port}"):  # fmt: skip
            with pytest.raises(RelayRejected) as exc:
                await _route(s, f, dst, pkt)
            assert exc.value.code == "ROUTE", dst


async def test_limits_pow_and_switching_off(make_relay, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = await _relay(make_relay, tmp_path, "d")
    f = await _relay(
        make_relay, tmp_path, "f", forward_allow_private=True, forward_pow_bits=8,
        forward_per_connection_minute=3,
    )  # fmt: skip
    off = await _relay(make_relay, tmp_path, "off", forward_allow_private=True, forwarding=False)
    async with aiohttp.ClientSession() as s:
        dk = await _keys(s, d)
        assert (await _keys(s, f)).fpow == 8
        pkt, kr, epk = _sealed(dk, GetModerationKeys(id=3).encode())
        with pytest.raises(RelayRejected) as exc:
            await _route(s, f, d, pkt)  # no proof of work
        assert exc.value.code == "POW"
        answer = await _open(await _route(s, f, d, pkt, solve_route_pow(pkt, 8)), kr, epk)
        assert answer.id == 3  # type: ignore[attr-defined]
        # Three route frames per connection and minute: the fourth is refused.
        pkt2, _, _ = _sealed(dk, GetModerationKeys(id=4).encode())
        assert isinstance(await _route(s, f, d, pkt2, solve_route_pow(pkt2, 8)), Routed)
        pkt3, _, _ = _sealed(dk, GetModerationKeys(id=5).encode())
        with pytest.raises(RelayRejected) as exc:
            await _route(s, f, d, pkt3, solve_route_pow(pkt3, 8))
        assert exc.value.code == "LIMIT"
        # Another connection has its own quota.
        async with aiohttp.ClientSession() as s2:
            assert isinstance(await _route(s2, f, d, pkt3, solve_route_pow(pkt3, 8)), Routed)
        # Switched off: rkeys says so, route is refused.
        assert (await _keys(s, off)).fwd == 0
        with pytest.raises(RelayRejected) as exc:
            await _route(s, off, d, pkt)
        assert exc.value.code == "ROUTE"
        # A routed client learns the refusal as such.
        routed = RoutedTransport(
            HTTPTransport(s, off), HTTPTransport(s, d), d,
            pin=lambda: None, save_pin=lambda ri: None, rng=os.urandom,
        )  # fmt: skip
        with pytest.raises(RelayRejected) as exc:
            await routed.moderation_keys()
        assert exc.value.code == "ROUTE"
        # A link that pins another relay identity: nothing is sent through F.
        pinned = RoutedTransport(
            HTTPTransport(s, f), HTTPTransport(s, d), d,
            pin=lambda: None, save_pin=lambda ri: None, rng=os.urandom,
            expected=lambda: bytes(16),
        )  # fmt: skip
        with pytest.raises(KeyValidationError):
            await pinned.moderation_keys()
        with pytest.raises(Exception, match="never routed"):
            await routed.delete_mailbox(MailboxCredential(bytes(16), lambda c: bytes(64)))


def test_route_keys_rotate_with_an_overlap_window() -> None:
    keys = RouteKeys(os.urandom(32), 3600)
    t0 = 1_800_000_000
    cur = keys.current_kid(t0)
    published = keys.published(t0)
    assert [e.kid for e in published] == [cur, cur - 1]
    assert all(verify_entry(keys.identity, e) for e in published)
    assert published[0].exp == (cur + 2) * 3600
    frame = GetModerationKeys(id=1).encode()
    # Sealed to the current key: opens now, and during the next period (overlap), not after.
    pkt = seal_packet(cur, keys.public(cur), frame, os.urandom)[0]
    assert keys.open(pkt, t0).inner == frame
    assert keys.open(pkt, t0 + 3600).inner == frame
    with pytest.raises(Exception) as exc:
        keys.open(pkt, t0 + 2 * 3600)
    assert getattr(exc.value, "code", None).value == "RKEY"  # type: ignore[union-attr]
    # The same seed gives the same identity and keys (every process of a deployment).
    again = RouteKeys(keys._seed, 3600)
    assert again.identity == keys.identity and again.public(cur) == keys.public(cur)


# --- a web server that is not a relay ---------------------------------------------------------

_STRANGER: list[TestServer] = []


async def _stranger() -> str:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello, not a relay")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    _STRANGER.append(server)
    return str(server.make_url("")).rstrip("/")


async def stranger_close() -> None:
    while _STRANGER:
        await _STRANGER.pop().close()


def _free_port() -> int:
    from liverelay import free_port

    return free_port()
