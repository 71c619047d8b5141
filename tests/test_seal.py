"""Sealed mail and receipts on their own: what opens, and what a server cannot do."""

from __future__ import annotations

import pytest

import p2pchat
from p2pchat.shared.seal import check_mailbox_key, open_receipt, open_seal, receipt, seal
from p2pchat.store import Message

ALICE = p2pchat.Identity.generate()
BOB = p2pchat.Identity.generate()
MALLORY = p2pchat.Identity.generate()


def letter(body: str = "for bob's eyes only", id: str = "m1") -> Message:
    return Message(id=id, sender="alice", recipient="bob", body=body, sent_at=1234.5)


def opened(sealed: str, *, item: str = "m1", sender: str = "alice", me: str = "bob") -> Message:
    return open_seal(BOB, me, item=item, sender=sender, sealed=sealed, sender_key=ALICE.key)


def test_a_sealed_message_opens_for_its_recipient_only() -> None:
    sealed = seal(ALICE, letter(), BOB.mailbox_key)
    assert b"bob's eyes" not in sealed.encode()
    message = opened(sealed)
    assert (message.body, message.sender, message.sent_at, message.shipped) == (
        "for bob's eyes only",
        "alice",
        1234.5,
        True,
    )
    with pytest.raises(p2pchat.SealError, match="does not open: altered"):
        open_seal(MALLORY, "bob", item="m1", sender="alice", sealed=sealed, sender_key=ALICE.key)


def test_the_same_message_seals_differently_each_time() -> None:
    assert seal(ALICE, letter(), BOB.mailbox_key) != seal(ALICE, letter(), BOB.mailbox_key)


def test_an_altered_item_does_not_open() -> None:
    sealed = seal(ALICE, letter(), BOB.mailbox_key)
    flipped = sealed[:40] + ("A" if sealed[40] != "A" else "B") + sealed[41:]
    with pytest.raises(p2pchat.SealError, match="does not open: altered"):
        opened(flipped)


def test_an_item_moved_to_another_id_recipient_or_sender_is_refused() -> None:
    sealed = seal(ALICE, letter(), BOB.mailbox_key)
    with pytest.raises(p2pchat.SealError, match="does not open"):
        opened(sealed, item="m2")  # the id is bound into the seal
    with pytest.raises(p2pchat.SealError, match="not what it claims"):
        opened(sealed, sender="carol")  # the server says carol wrote it
    with pytest.raises(p2pchat.SealError):
        opened(sealed, me="bobby")


def test_a_message_signed_by_someone_else_is_refused() -> None:
    # mallory seals "from alice" to bob: it opens, but alice's key did not sign it.
    forged = seal(MALLORY, letter(), BOB.mailbox_key)
    with pytest.raises(p2pchat.SealError, match="not signed by the key of alice"):
        opened(forged)


def test_a_long_body_of_characters_json_would_escape_stays_small() -> None:
    body = '\x01"\\' * 5000  # 15,000 bytes that JSON would write as ~60,000
    sealed = seal(ALICE, letter(body), BOB.mailbox_key)
    assert len(sealed) < 21_000
    assert opened(sealed).body == body


def test_receipts_are_checked_against_the_recipients_key() -> None:
    signed = receipt(BOB, "bob", "alice", ["m1", "m2"])
    assert open_receipt("alice", recipient="bob", sealed=signed, recipient_key=BOB.key) == [
        "m1",
        "m2",
    ]
    forged = receipt(MALLORY, "bob", "alice", ["m1"])  # the server makes one up
    with pytest.raises(p2pchat.SealError, match="not signed by them"):
        open_receipt("alice", recipient="bob", sealed=forged, recipient_key=BOB.key)
    with pytest.raises(p2pchat.SealError):  # bob's receipt for carol's messages, replayed
        open_receipt("carol", recipient="bob", sealed=signed, recipient_key=BOB.key)


def test_a_mailbox_key_is_vouched_for_by_its_identity() -> None:
    assert check_mailbox_key(BOB.key, BOB.mailbox_key, BOB.mailbox_signature)
    assert not check_mailbox_key(BOB.key, MALLORY.mailbox_key, BOB.mailbox_signature)
    assert not check_mailbox_key(BOB.key, MALLORY.mailbox_key, MALLORY.mailbox_signature)
    # Derived from the identity: the same key file gives the same mailbox key.
    assert p2pchat.Identity(BOB._private_key).mailbox_key == BOB.mailbox_key
