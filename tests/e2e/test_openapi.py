"""The OpenAPI 3.1 contract (relay/openapi.json, served at ``GET /v1/openapi.json``; issue
19, item 13): every route the relay registers is in it and nothing else is, and schemathesis
drives a live relay from it (``python -m relay serve``, SQLite): no 5xx, only documented
status codes and content types, reply bodies of the documented shape, 405 for a method a
path does not document. Bounded: a few dozen derandomized examples per operation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import schemathesis
from fuzzkit import binary, golden_frames, mutated
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from liverelay import RelayProcess, start_relay
from schemathesis import checks

from clientlib.wire import (
    Deposit,
    Fanout,
    FetchBundle,
    GetBoundaries,
    GetModerationKeys,
    GetPow,
    RequestChallenge,
)
from clientlib.wire.client_frames import GetRouteKeys
from relay.app import create_app
from relay.config import RelayConfig

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "relay" / "openapi.json").read_text())
CT = "application/x-blindrelay"


def registered_routes(config: RelayConfig) -> set[tuple[str, str]]:
    app = create_app(config)
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"  # aiohttp adds HEAD to every GET route by itself
    }


def documented_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, ops in DOC["paths"].items() for method in ops}


def test_every_registered_route_is_documented(tmp_path: Path) -> None:
    """A route added to the relay without its entry in relay/openapi.json fails here (and
    a documented route the relay no longer serves too)."""
    config = RelayConfig(data_dir=str(tmp_path), forwarding=True)
    assert registered_routes(config) == documented_routes()


def test_the_document_is_openapi_3_1_and_served(tmp_path: Path) -> None:
    from schemathesis.openapi import from_dict

    assert DOC["openapi"].startswith("3.1.")
    from_dict(DOC)  # schemathesis parses it
    relay = start_relay(tmp_path, "doc")
    try:
        import urllib.request

        with urllib.request.urlopen(relay.url + "v1/openapi.json", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("application/json")
            assert json.loads(resp.read()) == DOC
    finally:
        relay.stop()


# --- schemathesis against a live relay -----------------------------------------------------


def _frames() -> st.SearchStrategy[bytes]:
    """Bodies for application/x-blindrelay: valid golden frames, mutations of them, random
    msgpack maps behind a version byte, raw bytes."""
    seeds = sorted(golden_frames().values())
    sid = os.urandom(16)
    valid = [  # a well-formed request for each route (most answer AUTH: unknown send id)
        GetModerationKeys(id=1).encode(),
        RequestChallenge(id=2, op="create").encode(),
        Deposit(id=3, sid=sid, eid=os.urandom(16), flags=0, ct=os.urandom(256)).encode(),
        Fanout(id=4, eid=os.urandom(16), flags=0, ct=os.urandom(256), to=sid + bytes(32)).encode(),
        FetchBundle(id=5, sid=sid).encode(),
        GetBoundaries(id=6, sid=sid).encode(),
        GetPow(id=7, sid=sid).encode(),
        GetRouteKeys(id=8).encode(),
    ]
    maps = st.dictionaries(
        st.sampled_from(["t", "id", "op", "sid", "rid", "eid", "ct", "flags", "nonce", "cmd"]),
        st.one_of(st.integers(0, 2**32), binary(max_size=40), st.text(max_size=8)),
        max_size=6,
    ).map(lambda m: b"\x01" + msgpack.packb(m, use_bin_type=True))
    return st.one_of(
        st.sampled_from(valid), st.sampled_from(seeds), mutated(seeds), maps, binary(max_size=64)
    )


schemathesis.openapi.media_type(CT, _frames())


@schemathesis.deserializer(CT)
def _decode_frame(ctx: Any, response: Any) -> Any:
    """A reply body as the map the schemas describe (the version byte checked and dropped)."""
    body = response.content
    if body[:1] != b"\x01":
        raise ValueError("not a v1 frame")
    return msgpack.unpackb(body[1:], raw=False)


@pytest.fixture(scope="module")
def live_relay_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("openapi")
    relay: RelayProcess = start_relay(tmp, "relay", BLINDRELAY_FORWARDING="true")
    try:
        yield relay.url
    finally:
        relay.stop()


@pytest.fixture(scope="module")
def api(live_relay_url: str) -> Any:
    schema = schemathesis.openapi.from_url(live_relay_url + "v1/openapi.json")
    # /v1/ws needs an upgrade a plain HTTP client does not make (its 400 is still checked
    # by the coverage test and tests/integration/test_web_surface.py).
    return schema.exclude(path="/v1/ws")


schema = schemathesis.pytest.from_fixture("api")

EXAMPLES = int(os.environ.get("BLINDRELAY_OPENAPI_EXAMPLES", "25"))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_live_relay_keeps_the_contract(case: Any) -> None:
    case.call_and_validate(
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.unsupported_method,
        ]
    )
