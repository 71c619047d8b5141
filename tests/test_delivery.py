"""The delivery rules on their own: events in, effects out, no sockets, no store."""

from __future__ import annotations

import pytest

import p2pchat
from p2pchat.peering.delivery import (
    Acknowledge,
    Deliver,
    Delivery,
    MarkShipped,
    StoreIncoming,
    StoreOutgoing,
    Transmit,
)
from p2pchat.store import Message


def mine(n: int, *, shipped: bool = False) -> Message:
    return Message(
        id=f"a{n}", sender="alice", recipient="bob", body=f"to bob {n}", sent_at=n, shipped=shipped
    )


def theirs(n: int) -> Message:
    return Message(id=f"b{n}", sender="bob", recipient="alice", body=f"to alice {n}", sent_at=n)


def ids(messages: tuple[Message, ...]) -> list[str]:
    return [m.id for m in messages]


def test_a_message_is_stored_before_it_is_sent() -> None:
    delivery = Delivery("alice", "bob")
    assert delivery.submit([mine(1)]) == [StoreOutgoing((mine(1),))]
    assert delivery.resume([]) == []
    assert delivery.stored_outgoing([mine(1)]) == [Transmit((mine(1),))]
    assert not delivery.all_acknowledged


def test_the_backlog_goes_first_then_what_was_stored_meanwhile() -> None:
    delivery = Delivery("alice", "bob")
    # Stored while the backlog was being read: held back, not sent ahead of it.
    assert delivery.stored_outgoing([mine(3)]) == []
    effects = delivery.resume([mine(1), mine(2), mine(3)])  # 3 is in the backlog too
    assert [ids(e.messages) for e in effects if isinstance(e, Transmit)] == [["a1", "a2", "a3"]]
    assert delivery.stored_outgoing([mine(4)]) == [Transmit((mine(4),))]


def test_each_message_goes_once_per_connection() -> None:
    delivery = Delivery("alice", "bob")
    delivery.resume([mine(1)])
    assert delivery.stored_outgoing([mine(1)]) == []  # sent with the backlog already
    assert delivery.stored_outgoing([mine(2, shipped=True)]) == []  # acknowledged before


def test_acks_in_any_order_and_repeated_mark_each_message_shipped_once() -> None:
    delivery = Delivery("alice", "bob")
    delivery.resume([mine(1), mine(2), mine(3)])
    assert delivery.receive_ack(["a3", "a1", "a3"]) == [MarkShipped(("a3", "a1"))]
    delivery.shipped(["a3", "a1"])
    assert ids(tuple(delivery.unacknowledged)) == ["a2"]
    assert delivery.receive_ack(["a1"]) == []  # again: nothing left to do
    assert delivery.receive_ack(["a2"]) == [MarkShipped(("a2",))]
    delivery.shipped(["a2"])
    assert delivery.all_acknowledged


def test_an_ack_counts_only_for_what_was_sent_here() -> None:
    delivery = Delivery("alice", "bob")
    delivery.resume([mine(1)])
    # An id of a message to someone else, or never sent: not ours to mark.
    assert delivery.receive_ack(["to-carol", "b1"]) == []


def test_resend_after_reconnect_sends_what_is_still_unshipped_in_order() -> None:
    first = Delivery("alice", "bob")
    first.resume([])
    for n in range(1, 4):
        first.stored_outgoing([mine(n)])
    first.shipped(e.ids[0] for e in first.receive_ack(["a1"]) if isinstance(e, MarkShipped))
    # The connection drops; a new one starts from what the store says is unshipped.
    second = Delivery("alice", "bob")
    (transmit,) = second.resume([mine(2), mine(3)])
    assert isinstance(transmit, Transmit)
    assert ids(transmit.messages) == ["a2", "a3"]


def test_received_messages_are_stored_then_acknowledged_and_delivered_once() -> None:
    delivery = Delivery("alice", "bob")
    batch = [theirs(1), theirs(2), theirs(1)]  # a duplicate in the same burst
    assert delivery.receive_messages(batch) == [StoreIncoming((theirs(1), theirs(2)))]
    # The store says b1 was known (a resend after a lost ack): acknowledged, not delivered.
    effects = delivery.stored_incoming([theirs(1), theirs(2)], new=[theirs(2)])
    assert effects == [Deliver((theirs(2),)), Acknowledge(("b1", "b2"))]
    # Nothing new at all: still acknowledged, so the other side stops resending.
    assert delivery.stored_incoming([theirs(1)], new=[]) == [Acknowledge(("b1",))]


def test_messages_that_break_the_rules_are_a_protocol_error() -> None:
    delivery = Delivery("alice", "bob", max_message_size=5)
    with pytest.raises(p2pchat.ProtocolError, match="over the limit of 5 bytes"):
        delivery.receive_messages([theirs(1)])
    with pytest.raises(p2pchat.ProtocolError, match="not from bob to alice"):
        Delivery("alice", "bob").receive_messages([mine(1)])
    with pytest.raises(ValueError, match="not a message from alice to bob"):
        delivery.submit([theirs(1)])


def test_all_acknowledged_waits_for_what_is_held_behind_the_backlog() -> None:
    delivery = Delivery("alice", "bob")
    assert delivery.all_acknowledged
    delivery.stored_outgoing([mine(1)])
    assert not delivery.all_acknowledged  # held, not yet sent
    delivery.resume([])
    delivery.shipped(["a1"])
    assert delivery.all_acknowledged
    with pytest.raises(RuntimeError):
        delivery.resume([])


def test_messages_received_out_of_order_and_resent_are_each_handed_over_once() -> None:
    # The other side's backlog after a reconnect may overlap what came before, and a
    # later burst may carry older ids: what is new goes to the application in the order
    # it came, once; everything is acknowledged, so the resending stops.
    delivery = Delivery("alice", "bob")
    assert delivery.receive_messages([theirs(3), theirs(1)]) == [
        StoreIncoming((theirs(3), theirs(1)))
    ]
    effects = delivery.stored_incoming([theirs(3), theirs(1)], new=[theirs(3), theirs(1)])
    assert effects == [Deliver((theirs(3), theirs(1))), Acknowledge(("b3", "b1"))]
    again = delivery.receive_messages([theirs(1), theirs(2), theirs(3)])
    assert again == [StoreIncoming((theirs(1), theirs(2), theirs(3)))]
    effects = delivery.stored_incoming([theirs(1), theirs(2), theirs(3)], new=[theirs(2)])
    assert effects == [Deliver((theirs(2),)), Acknowledge(("b1", "b2", "b3"))]
