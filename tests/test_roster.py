"""Membership decisions without I/O (``peering/roster.py``): signed rosters, what a member
makes of each group message it receives."""

from __future__ import annotations

import msgspec
import pytest

from p2pchat.messages import GroupNote, Roster
from p2pchat.peering.roster import (
    Verdict,
    check_group_name,
    group_id_of,
    judge,
    new_group_id,
    record_of,
    roster_payload,
    signed_roster,
)
from p2pchat.shared.identity import Identity, verify_signature
from p2pchat.store import GroupRecord, Message

ADMIN = Identity.generate()
SALT = "5a" * 16
GROUP = group_id_of("alice", SALT)


def roster(version: int, members: list[str], change: str = "add", subject: str = "") -> Roster:
    return signed_roster(
        ADMIN.sign,
        group=GROUP,
        salt=SALT,
        name="club",
        admin="alice",
        members=members,
        version=version,
        change=change,  # type: ignore[arg-type]
        subject=subject or None,
    )


def msg(sender: str, body: str = "hi") -> Message:
    return Message(id=f"id-{body}", sender=sender, recipient="carol", body=body, sent_at=1.0)


def decide(
    known: GroupRecord | None, sender: str, note: GroupNote, me: str = "carol", **kw: bool
) -> Verdict:
    return judge(
        me,
        known,
        msg(sender),
        note,
        roster_ok=kw.get("roster_ok", True),
        leave_ok=kw.get("leave_ok", False),
        max_members=64,
    )


V1 = roster(1, ["alice", "bob", "carol"], "create")
KNOWN = record_of(V1, active=True, announced=True)


def test_the_signature_covers_group_and_version() -> None:
    assert verify_signature(ADMIN.key, roster_payload(V1), V1.signature)
    for moved in (
        msgspec.structs.replace(V1, group="g" + "2" * 32),
        msgspec.structs.replace(V1, version=2),
        msgspec.structs.replace(V1, members=[*V1.members, "mallory"]),
    ):
        assert not verify_signature(ADMIN.key, roster_payload(moved), V1.signature)


def test_a_first_message_makes_the_group_known() -> None:
    verdict = decide(None, "bob", GroupNote(roster=V1))
    assert verdict.message is not None
    assert verdict.record is not None
    assert verdict.message.recipient == GROUP
    assert verdict.record.members == ("alice", "bob", "carol")
    assert decide(None, "bob", GroupNote(roster=V1), me="dave").refused


def test_refused_alone_forged_other_admin_non_member_bad_name() -> None:
    assert decide(KNOWN, "bob", GroupNote(roster=V1), roster_ok=False).refused
    other = msgspec.structs.replace(V1, admin="bob")
    assert "admin" in decide(KNOWN, "bob", GroupNote(roster=other)).refused
    assert decide(KNOWN, "mallory", GroupNote(roster=V1)).refused
    assert decide(KNOWN, "bob", GroupNote(roster=V1, notice="change")).refused
    bad = msgspec.structs.replace(V1, name="a\x1b[2J")
    assert "control" in decide(None, "bob", GroupNote(roster=bad)).refused


def test_an_older_roster_changes_nothing_and_a_removed_sender_is_refused() -> None:
    v2 = roster(2, ["alice", "carol"], "remove", "bob")
    now = record_of(v2, active=True, announced=True)
    late = decide(now, "bob", GroupNote(roster=V1))  # bob, still on v1, writes after
    assert "not a member" in late.refused
    assert late.record is None
    from_alice = decide(now, "alice", GroupNote(roster=V1))
    assert from_alice.message is not None
    assert from_alice.record is None


def test_removed_we_see_the_notice_then_nothing() -> None:
    v2 = roster(2, ["alice", "bob"], "remove", "carol")
    told = decide(KNOWN, "alice", GroupNote(roster=v2, notice="change"))
    assert told.message is not None
    assert told.record is not None
    assert told.message.body == "alice removed carol"
    assert not told.record.active
    after = decide(told.record, "bob", GroupNote(roster=v2))
    assert "no longer" in after.refused


def test_a_leave_needs_its_signature() -> None:
    assert decide(KNOWN, "bob", GroupNote(roster=V1, notice="leave")).refused
    left = decide(KNOWN, "bob", GroupNote(roster=V1, notice="leave"), leave_ok=True)
    assert left.message is not None
    assert left.record is not None
    assert left.message.body == "bob left"
    assert left.record.members == ("alice", "carol")
    assert left.gone == ("bob",)


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there", "bidi\u202e"])
def test_group_names_outside_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match="group name"):
        check_group_name(name)


def test_only_the_maker_of_a_group_is_its_admin() -> None:
    """A member cannot tell one who has not seen the group yet that they made it: the id
    is bound to its admin, whoever signs the roster and whatever salt it names."""
    bob = Identity.generate()
    for salt in (SALT, "6b" * 16):
        claim = signed_roster(
            bob.sign,
            group=GROUP,
            salt=salt,
            name="club",
            admin="bob",
            members=["alice", "bob", "carol", "mallory"],
            version=1,
            change="create",
        )
        verdict = decide(None, "bob", GroupNote(roster=claim))  # its signature checks out
        assert verdict.message is None
        assert verdict.record is None
        assert "was not made by bob" in verdict.refused
    made, salt = new_group_id("alice")
    assert made == group_id_of("alice", salt) != group_id_of("bob", salt)
    assert made != new_group_id("alice")[0]  # random: two groups, two ids
