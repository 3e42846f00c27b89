"""The WebSocket output path's templated frames are byte-identical to the codec's."""

from __future__ import annotations

import os

import pytest

from clientlib.wire import decode_relay_frame
from clientlib.wire.frames import EnvelopeDelivered, Ok, StoredEnvelope
from clientlib.wire.limits import (
    ENVELOPE_ID_SIZE,
    FRANKING_COMMITMENT_SIZE,
    FRANKING_TAG_SIZE,
    HANDLE_SIZE,
    MAILBOX_ID_SIZE,
)
from relay.ws.handler import env_frame, ok_frame, ws_frame_header


@pytest.mark.parametrize("request_id", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1])
def test_ok_frame_is_the_codecs_ok(request_id: int) -> None:
    assert ok_frame(1, request_id) == Ok(id=request_id).encode(1)


@pytest.mark.parametrize(
    "env",
    [
        StoredEnvelope(seq=1, eid=os.urandom(ENVELOPE_ID_SIZE), ts=1_700_000_000, flags=0, ct=os.urandom(1024)),
        StoredEnvelope(
            seq=2**40,
            eid=os.urandom(ENVELOPE_ID_SIZE),
            ts=5,
            flags=1,
            ct=os.urandom(65536),
            fc=os.urandom(FRANKING_COMMITMENT_SIZE),
            hdl=b"h" * HANDLE_SIZE,
            ft=os.urandom(FRANKING_TAG_SIZE),
            fx=os.urandom(57),
        ),
    ],
)
def test_env_frame_is_the_codecs_push(env: StoredEnvelope) -> None:
    rid = os.urandom(MAILBOX_ID_SIZE)
    data = env_frame(1, rid, env)
    assert data == EnvelopeDelivered(rid=rid, env=env).encode(1)
    _, frame = decode_relay_frame(data, max_size=1 << 20)
    assert frame == EnvelopeDelivered(rid=rid, env=env)


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_frame_header_rfc6455(length: int, header: bytes) -> None:
    assert ws_frame_header(length) == header
