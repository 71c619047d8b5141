"""The rules of file transfers, with no I/O: names, offers, windows."""

from __future__ import annotations

import pytest

import p2pchat
from p2pchat.messages import MAX_FILE_DATA
from p2pchat.peering.files import (
    FileNote,
    ReceiveWindow,
    SendWindow,
    check_file_name,
    choose_name,
    is_offer,
    offer_body,
    parse_offer,
)
from p2pchat.protocol import Decoder, FileData, encode


@pytest.mark.parametrize(
    "name", ["photo.jpg", "Résumé 2024.pdf", "データ.txt", "a", "a..b", "no extension", "x" * 255]
)
def test_plain_names_pass(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "/abs",
        ".hidden",
        "x\n",
        "tab\tx",
        "\x7f",
        "rlo\u202ex",
        "zw\u200bj",
        "trailing.",
        "trailing ",
        " leading",
        "CON",
        "con.txt",
        "LPT1",
        "aux.tar.gz",
        "a:b",
        "a*b",
        "a?b",
        "x" * 256,
        "é" * 128,
    ],
)
def test_unsafe_names_fail(name: str) -> None:
    with pytest.raises(p2pchat.UnsafeFileName, match="unsafe file name"):
        check_file_name(name)


def test_a_free_name_keeps_the_extension_and_skips_part_files() -> None:
    taken = {"a.txt", "a (1).txt.part", "b"}
    assert choose_name("a.txt", taken.__contains__) == "a (2).txt"
    assert choose_name("b", taken.__contains__) == "b (1)"
    assert choose_name("c.txt", taken.__contains__) == "c.txt"


def test_an_offer_body_round_trips_and_is_told_apart() -> None:
    note = FileNote(id="abc", name="a.txt", size=3, sha256="0" * 64)
    body = offer_body(note)
    assert is_offer(body)
    assert not is_offer("hello")
    assert parse_offer(body) == note
    with pytest.raises(p2pchat.ProtocolError):
        parse_offer(body.replace('"size":3', '"size":-1'))


def test_a_front_end_shows_an_offer_as_one_plain_line() -> None:
    note = FileNote(id="abc", name="a.txt", size=12345, sha256="0" * 64)
    assert p2pchat.shown_text(offer_body(note)) == "[file offered: a.txt, 12,345 bytes]"
    assert p2pchat.shown_text("just text") == "just text"
    assert p2pchat.shown_text(offer_body(note)[:-3]) == "[a file offer that could not be read]"


def test_the_send_window_holds_to_the_acknowledgements() -> None:
    window = SendWindow(size=1000, window=300, start=100)
    assert window.room() == 300
    window.advance(300)
    assert window.room() == 0
    assert window.acknowledge(250)
    assert not window.acknowledge(200)  # old news
    assert window.room() == 150
    with pytest.raises(p2pchat.ProtocolError):
        window.acknowledge(500)  # more than was sent
    with pytest.raises(p2pchat.ProtocolError):
        SendWindow(size=10, window=300, start=11)


def test_the_receive_window_checks_order_size_and_window() -> None:
    window = ReceiveWindow(size=1000, window=400, start=0)
    window.data(0, 99)
    assert not window.sync_due(99)
    assert window.sync_due(100)  # a quarter of the window
    with pytest.raises(p2pchat.ProtocolError, match="expected at 99"):
        window.data(150, 10)
    with pytest.raises(p2pchat.ProtocolError, match="past the window"):
        window.data(99, 350)
    with pytest.raises(p2pchat.SizeMismatch):
        ReceiveWindow(size=10, window=400, start=0).data(0, 11)


def test_file_data_is_a_binary_frame_that_round_trips() -> None:
    frame = FileData(id="a-1", offset=2**40, data=b"\x00{raw}\xff" * 1000)
    encoded = encode(frame)
    assert encoded[4:5] == b"\x00"  # not JSON: the bytes as they are
    assert len(encoded) == 4 + 1 + 1 + 3 + 8 + len(frame.data)
    assert Decoder().feed(encoded) == [frame]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x00", "too short"),
        (b"\x00\x03abc" + bytes(8), "too short"),  # no bytes at all
        (b"\x00\x03a b" + bytes(8) + b"x", "rule for ids"),
        (b"\x00\x00" + bytes(8) + b"x", "too short"),
        (b"\x00\x01a" + (2**63).to_bytes(8, "big") + b"x", "out of range"),
        (b"\x00\x01a" + bytes(8) + b"x" * (MAX_FILE_DATA + 1), "over"),
    ],
)
def test_a_broken_binary_frame_is_a_protocol_error(body: bytes, reason: str) -> None:
    decoder = Decoder(max_frame=None)
    with pytest.raises(p2pchat.ProtocolError, match=reason):
        decoder.feed(len(body).to_bytes(4, "big") + body)
