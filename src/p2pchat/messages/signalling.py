"""The messages between a peer and the signalling server: the online list, whois,
invitations, presence, relay and punch requests, and the mailbox (sealed mail for users
who are away). ``docs/protocol.md`` says what each is for."""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec

from .fields import Address, Base, Base64, MessageId, Reason, Sealed, Timestamp, Token, UserName

__all__ = [
    "Accept",
    "Accepted",
    "Cancel",
    "Cancelled",
    "Collect",
    "Deposit",
    "Invite",
    "Invited",
    "Key",
    "ListUsers",
    "Mail",
    "MailItem",
    "Ok",
    "Presence",
    "PunchNote",
    "PunchRequest",
    "PunchStep",
    "Receipt",
    "Refuse",
    "Refused",
    "Relay",
    "RelayOffer",
    "RelayRequest",
    "RelayTicket",
    "Relaying",
    "Ringing",
    "Settle",
    "Users",
    "Watch",
    "Whois",
]


class ListUsers(Base, tag="list", frozen=True):
    id: Token


class Users(Base, tag="users", frozen=True):
    id: Token
    users: list[UserName]
    truncated: bool = False


class RelayRequest(Base, tag="relay_request", frozen=True):
    """The invitee cannot dial the inviter: join us through the server."""

    id: Token
    invitation: Token


class RelayTicket(Base, tag="relay_ticket", frozen=True):
    """The secret that the invitee presents on its relay connection. ``server``: the
    server node that holds the relay, to connect to (none: the server answering)."""

    id: Token
    ticket: Token
    server: Address | None = None


class RelayOffer(Base, tag="relay_offer", frozen=True):
    """Pushed to the inviter: present ``ticket`` on a relay connection to meet the invitee,
    at ``server`` if set (the node that holds the relay), else at the server pushing this."""

    invitation: Token
    ticket: Token
    server: Address | None = None


class Relay(Base, tag="relay", frozen=True):
    """First message of a relay connection, instead of hello."""

    ticket: Token


class Relaying(Base, tag="relaying", frozen=True):
    """Both sides are here: from the next byte on, the server only passes bytes along."""


PunchStep: TypeAlias = Literal["connect", "sync"]


class PunchRequest(Base, tag="punch_request", frozen=True):
    """Pass ``step`` on to the other side of an accepted invitation (DCUtR through the
    server). ``connect`` (the invitee first, the inviter in answer): here is where I am,
    dial me back; ``sync`` (the invitee): punch now."""

    id: Token
    invitation: Token
    step: PunchStep


class PunchNote(Base, tag="punch_note", frozen=True):
    """Pushed: the other side of ``invitation`` sent ``step``; the server adds where that
    side can be dialled (``addresses``) and where it sees it come from (``observed``)."""

    invitation: Token
    step: PunchStep
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)] = []
    observed: Address | None = None


class Whois(Base, tag="whois", frozen=True):
    id: Token
    user: UserName


class Key(Base, tag="key", frozen=True):
    """The key the server has bound to ``user``, and the mailbox key it last published."""

    id: Token
    user: UserName
    key: Base64
    mailbox_key: Base64 | None = None
    mailbox_sig: Base64 | None = None


class Invite(Base, tag="invite", frozen=True):
    id: Token
    user: UserName


class Ringing(Base, tag="ringing", frozen=True):
    """The invitation was passed on; ``invitation`` identifies it from now on."""

    id: Token
    invitation: Token
    certificate: Base64


class Invited(Base, tag="invited", frozen=True):
    """Pushed to the invitee: who invites, where to dial them, and their certificate."""

    invitation: Token
    sender: UserName
    addresses: Annotated[list[Address], msgspec.Meta(max_length=8)]
    certificate: Base64


class Accept(Base, tag="accept", frozen=True):
    id: Token
    invitation: Token


class Refuse(Base, tag="refuse", frozen=True):
    id: Token
    invitation: Token
    reason: Reason = ""


class Cancel(Base, tag="cancel", frozen=True):
    id: Token
    invitation: Token


class Ok(Base, tag="ok", frozen=True):
    id: Token


class Accepted(Base, tag="accepted", frozen=True):
    """Pushed to the inviter: the invitee accepted and is dialling."""

    invitation: Token
    user: UserName


class Refused(Base, tag="refused", frozen=True):
    """Pushed to the inviter: the invitee refused (or could not dial)."""

    invitation: Token
    user: UserName
    reason: Reason = ""


class Cancelled(Base, tag="cancelled", frozen=True):
    """Pushed to the invitee: the invitation no longer stands."""

    invitation: Token
    reason: Reason = ""


class Presence(Base, tag="presence", frozen=True):
    user: UserName
    online: bool


class Watch(Base, tag="watch", frozen=True):
    """Hear of these users' logins and logouts (``presence``) however many are online: a
    server with more than ``presence_broadcast`` users online tells each login and logout
    only to those who watch that user. Replaces the list sent before; answered ``ok``."""

    id: Token
    users: Annotated[list[UserName], msgspec.Meta(max_length=1000)]


# The mailbox (peer <-> server).


class MailItem(msgspec.Struct, frozen=True, kw_only=True):
    """One item in a mailbox: a sealed message, or a signed receipt for messages sent.

    ``item`` is the message id (for a receipt: the id the recipient chose for it);
    ``sender`` is who deposited it, as the server saw them log in; ``at`` when.
    """

    item: MessageId
    kind: Literal["msg", "receipt"]
    sender: UserName
    sealed: Sealed
    at: Timestamp


class Deposit(Base, tag="deposit", frozen=True):
    """Leave a sealed message for ``recipient``; answered ``ok`` (also if already there)."""

    id: Token
    recipient: UserName
    item: MessageId
    sealed: Sealed


class Collect(Base, tag="collect", frozen=True):
    """Ask for what waits in our mailbox, oldest first; answered with ``mail``."""

    id: Token


class Mail(Base, tag="mail", frozen=True):
    """Items for the recipient: the answer to ``collect`` (``id`` set, ``more`` if the page
    is not all), or pushed (no ``id``) when something is deposited while it is online."""

    items: Annotated[list[MailItem], msgspec.Meta(max_length=256)]
    id: Token | None = None
    more: bool = False


class Settle(Base, tag="settle", frozen=True):
    """These items of our mailbox are stored on our side: the server drops them."""

    id: Token
    items: Annotated[list[MessageId], msgspec.Meta(max_length=256)]


class Receipt(Base, tag="receipt", frozen=True):
    """Tell ``recipient`` (the messages' sender) that we stored ``items``; ``sealed`` holds
    our signed statement, deposited in their mailbox as a ``receipt`` item."""

    id: Token
    recipient: UserName
    item: MessageId
    sealed: Sealed
