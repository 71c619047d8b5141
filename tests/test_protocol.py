"""The protocol on raw bytes: no sockets, no event loop."""

from __future__ import annotations

import re
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import FrameTooLarge, ProtocolError
from p2pchat.frontends.webevents import decode_command
from p2pchat.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Decoder,
    Error,
    Hello,
    Invite,
    Invited,
    ListUsers,
    Msg,
    Presence,
    PunchNote,
    PunchRequest,
    Reverse,
    Users,
    Welcome,
    WireMessage,
    encode,
)

SAMPLES: list[WireMessage] = [
    Hello(version=PROTOCOL_VERSION, name="alice", addresses=[("127.0.0.1", 4000), ("::1", 4000)]),
    Hello(version=PROTOCOL_VERSION, name="bob", invitation="inv-1"),
    ListUsers(id="1"),
    Users(id="1", users=["alice", "bob"]),
    Invite(id="2", user="bob"),
    Invited(invitation="inv-1", sender="alice", addresses=[("10.0.0.1", 1)], certificate="AAAA"),
    Presence(user="carol", online=False),
    Msg(id="6f1c", ts=1700000000.25, body="héllo, wörld ✓\nsecond line"),
    Ack(ids=["a", "b"]),
    Error(code="unknown_user", reason="nobody", id="3"),
    Hello(version=PROTOCOL_VERSION, name="carol", traversal=True),
    Welcome(version=PROTOCOL_VERSION, name="carol", observed="198.18.0.2", observed_port=4000),
    Reverse(invitation="inv-1"),
    PunchRequest(id="4", invitation="inv-1", step="sync"),
    PunchNote(invitation="inv-1", step="connect", addresses=[("::1", 4000)], observed=("::1", 9)),
]


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def test_frame_layout_is_length_then_json() -> None:
    data = encode(ListUsers(id="7"))
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert data[4:] == b'{"type":"list","id":"7"}'


def test_round_trip_in_one_chunk() -> None:
    data = b"".join(encode(m) for m in SAMPLES)
    assert Decoder().feed(data) == SAMPLES


def test_one_byte_at_a_time_gives_the_same_messages() -> None:
    data = b"".join(encode(m) for m in SAMPLES)
    decoder = Decoder()
    received = []
    for i in range(len(data)):
        received.extend(decoder.feed(data[i : i + 1]))
    assert received == SAMPLES
    assert decoder.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=200))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    data = b"".join(encode(m) for m in SAMPLES)
    decoder = Decoder()
    received, position = [], 0
    for size in cuts:
        received.extend(decoder.feed(data[position : position + size]))
        position += size
    received.extend(decoder.feed(data[position:]))
    assert received == SAMPLES


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    decoder = Decoder(max_frame=1024)
    with pytest.raises(FrameTooLarge) as caught:
        decoder.feed(struct.pack(">I", 1025))  # only the header: no body sent at all
    assert caught.value.size == 1025
    assert caught.value.limit == 1024
    assert decoder.buffered == 0


def test_length_at_the_limit_is_accepted() -> None:
    body = b'{"type":"ack","ids":["' + b"x" * 30 + b'"]}'
    assert Decoder(max_frame=len(body)).feed(frame(body)) == [Ack(ids=["x" * 30])]


def test_encode_refuses_an_oversized_message() -> None:
    with pytest.raises(FrameTooLarge):
        encode(Msg(id="1", ts=0.0, body="x" * 2000), max_frame=1024)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty frame"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\xfd", "invalid JSON"),
        (b'{"type":"msg","id":"1","ts":0,"body":"\xff"}', "invalid UTF-8"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (b'"hello"', "Expected `object`, got `str`"),
        (b'{"id":"1"}', "missing required field `type`"),
        (b'{"type":"teleport"}', "Invalid value 'teleport' - at `$.type`"),
        (b'{"type":"invite","id":"1"}', "missing required field `user`"),
        (b'{"type":"invite","id":"1","user":7}', "Expected `str`, got `int` - at `$.user`"),
        (b'{"type":"invite","id":"1","user":"a b"}', "matching regex"),
        (b'{"type":"hello","version":1,"name":"' + b"n" * 33 + b'"}', "length <= 32"),
    ],
)
def test_bad_frames_are_protocol_errors_with_a_precise_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=None) as caught:
        Decoder().feed(frame(body))
    assert reason in str(caught.value)


def test_messages_before_a_bad_frame_are_still_returned_by_next_message() -> None:
    decoder = Decoder()
    decoder.receive_data(encode(ListUsers(id="1")) + frame(b"garbage"))
    assert decoder.next_message() == ListUsers(id="1")
    with pytest.raises(ProtocolError):
        decoder.next_message()


def test_a_failed_decoder_stays_failed() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"nope"))
    with pytest.raises(ProtocolError):
        decoder.feed(encode(ListUsers(id="1")))


def test_eof_inside_a_frame_is_an_error_and_between_frames_is_not() -> None:
    decoder = Decoder()
    decoder.feed(encode(ListUsers(id="1")))
    decoder.receive_eof()
    decoder = Decoder()
    decoder.feed(encode(ListUsers(id="1"))[:-3])
    with pytest.raises(ProtocolError, match="inside a frame"):
        decoder.receive_eof()


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    body = b'{"type":"list","id":"1","since":"v2"}'
    assert Decoder().feed(frame(body)) == [ListUsers(id="1")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_give_messages_or_protocol_error(data: bytes, chunk: int) -> None:
    decoder = Decoder(max_frame=256)
    try:
        for start in range(0, len(data), chunk):
            for message in decoder.feed(data[start : start + chunk]):
                assert isinstance(message, WireMessage.__args__)
    except ProtocolError:
        pass
    assert decoder.buffered <= 256 + 4 + chunk


def test_the_punch_messages_are_optional_additions_to_version_3() -> None:
    # An older peer's hello, without the new field, still decodes (and takes no part).
    old = b'{"type":"hello","version":3,"name":"dave"}'
    (hello,) = Decoder().feed(struct.pack(">I", len(old)) + old)
    assert isinstance(hello, Hello)
    assert hello.traversal is False
    for bad in (
        b'{"type":"punch_request","id":"1","invitation":"i","step":"now"}',
        b'{"type":"punch_note","invitation":"i","step":"sync","observed":["h",70000]}',
    ):
        with pytest.raises(ProtocolError):
            Decoder().feed(struct.pack(">I", len(bad)) + bad)


def test_json_nested_beyond_the_decoders_bound_is_a_protocol_error() -> None:
    # Python 3.11 stops msgspec at a depth where later ones let it say what is wrong: a
    # typed error either way, never a RecursionError.
    deep = b'{"type":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ProtocolError):
        Decoder().feed(len(deep).to_bytes(4, "big") + deep)
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_command(deep.decode())


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"type":"msg","id":"m1","ts":1e999,"body":"x"}', "$.ts"),
        (b'{"type":"msg","id":"m1","ts":-1,"body":"x"}', "$.ts"),
        (b'{"type":"msg","id":"m1","ts":1e300,"body":"x"}', "$.ts"),
        (b'{"type":"msg","id":"m 1","ts":1,"body":"x"}', "$.id"),
        (b'{"type":"msg","id":"","ts":1,"body":"x"}', "$.id"),
        (b'{"type":"ack","ids":["ok","\\u001b[2J"]}', "$.ids[1]"),
        (
            b'{"type":"mail","items":[{"item":"i1","kind":"msg","sender":"alice",'
            b'"sealed":"AA","at":1e999}]}',
            "$.items[0].at",
        ),
        (
            b'{"type":"mail","items":[{"item":"i1","kind":"msg","sender":"Bad Name!",'
            b'"sealed":"AA","at":1}]}',
            "$.items[0].sender",
        ),
        (b'{"type":"settle","id":"1","items":["a/b"]}', "$.items[0]"),
        (b'{"type":"welcome","version":123456789012345678901,"name":"a"}', "$.version"),
        (b'{"type":"hello","version":-1,"name":"a"}', "$.version"),
    ],
)
def test_times_ids_and_names_are_checked_where_they_enter(body: bytes, where: str) -> None:
    """Issue 18: a time must be finite and within bounds, an id of the form p2pchat makes."""
    with pytest.raises(ProtocolError, match=re.escape(where)):
        Decoder().feed(frame(body))
