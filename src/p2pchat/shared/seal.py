"""Sealed mail and signed receipts: what the server stores without being able to read,
change or fake. No I/O here.

A message for someone away is sealed with HPKE (RFC 9180, base mode; DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the recipient's mailbox key. Inside the
seal, the sender signs (sender, recipient, id, time, body) with its identity key, so that
the recipient knows who wrote it and nobody can swap a part. The HPKE ``info`` binds the
seal to its recipient and item id: an item moved to another id or person does not open.

A receipt is the recipient's signature over (recipient, sender, ids): the only thing that
makes a sender mark a mailbox message delivered. The server passes it along and cannot
make one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from ..errors import IdentityError, SealError
from ..messages import Base64, GroupNote, MessageId, Timestamp, UserName
from ..store import Message
from .identity import Identity, b64decode, b64encode, mailbox_key_payload, verify_signature

__all__ = [
    "Letter",
    "SignedReceipt",
    "open_letter",
    "open_receipt",
    "open_seal",
    "receipt",
    "seal",
]

SUITE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_SEAL_INFO: Final = b"p2pchat mail v1"
_LETTER: Final = b"p2pchat letter v1"
_GROUP_LETTER: Final = b"p2pchat group letter v1"
_RECEIPT: Final = b"p2pchat receipt v1"
MAX_RECEIPT_IDS: Final = 256
"""Message ids we put in one receipt: 256 UUIDs seal to about 13 KiB, well under the
server's item size; more go as several receipts. One received may hold up to 4096."""


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """What a seal holds: the message, and its sender's signature of it. Every field is
    checked as it is decoded (names, id, a finite time), before any signature is."""

    sender: UserName
    recipient: UserName
    id: MessageId
    ts: Timestamp
    body: str
    signature: Base64
    group: GroupNote | None = None
    """A group message's note (its roster): signed with the rest."""


class SignedReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What a receipt item holds: who stored which messages of whom, signed by them."""

    recipient: UserName
    sender: UserName
    ids: Annotated[list[MessageId], msgspec.Meta(min_length=1, max_length=4096)]
    signature: Base64


# MessagePack, not JSON: a body is carried as it is, never grown by escaping.
_letters: Final = msgspec.msgpack.Decoder(Letter)
_receipts: Final = msgspec.msgpack.Decoder(SignedReceipt)


def _fields(context: bytes, *parts: str | float) -> bytes:
    """An unambiguous encoding of ``parts`` under ``context`` (each length-prefixed)."""
    out = [context]
    for part in parts:
        data = repr(part).encode() if isinstance(part, float) else part.encode()
        out.append(struct.pack(">I", len(data)) + data)
    return b"".join(out)


def _signed(
    sender: str, recipient: str, message_id: str, ts: float, body: str, group: GroupNote | None
) -> bytes:
    """What the sender of a letter signs; a group letter's note (as JSON) with the rest."""
    if group is None:
        return _fields(_LETTER, sender, recipient, message_id, ts, body)
    note = msgspec.json.encode(group).decode()
    return _fields(_GROUP_LETTER, sender, recipient, message_id, ts, body, note)


def seal(
    identity: Identity, message: Message, mailbox_key: str, group: GroupNote | None = None
) -> str:
    """``message`` (from ``identity``) sealed to the recipient's ``mailbox_key``; a group
    message's copy for that member with its ``group`` note."""
    signed = _signed(
        message.sender, message.recipient, message.id, message.sent_at, message.body, group
    )
    letter = Letter(
        sender=message.sender,
        recipient=message.recipient,
        id=message.id,
        ts=message.sent_at,
        body=message.body,
        signature=identity.sign(signed),
        group=group,
    )
    try:
        public = X25519PublicKey.from_public_bytes(b64decode(mailbox_key))
    except ValueError as exc:
        raise SealError(f"the mailbox key of {message.recipient} is not a key: {exc}") from None
    info = _fields(_SEAL_INFO, message.recipient, message.id)
    return b64encode(SUITE.encrypt(msgspec.msgpack.encode(letter), public, info=info))


def open_seal(
    identity: Identity, me: str, *, item: str, sender: str, sealed: str, sender_key: str
) -> Message:
    """Open an item the server says ``sender`` left for ``me``; check everything.

    Raises SealError if it does not open with our key, was not written for this item and
    for us, or is not signed by ``sender_key`` as ``sender``.
    """
    return open_letter(
        identity, me, item=item, sender=sender, sealed=sealed, sender_key=sender_key
    )[0]


def open_letter(
    identity: Identity, me: str, *, item: str, sender: str, sealed: str, sender_key: str
) -> tuple[Message, GroupNote | None]:
    """``open_seal``, and the group note a group message's letter carries (else None)."""
    try:
        plain = SUITE.decrypt(
            b64decode(sealed), identity.mailbox_private_key, info=_fields(_SEAL_INFO, me, item)
        )
        letter = _letters.decode(plain)
    except RecursionError:  # msgspec's bound on nesting, on [[[[... a stranger sealed
        raise SealError(f"item {item} from {sender} does not open: nested too deeply") from None
    except (InvalidTag, ValueError, IdentityError, msgspec.DecodeError) as exc:
        raise SealError(
            f"item {item} from {sender} does not open: {str(exc) or 'altered'}"
        ) from None
    if (letter.recipient, letter.id, letter.sender) != (me, item, sender):
        raise SealError(
            f"item {item} is not what it claims: written by {letter.sender} to "
            f"{letter.recipient} as {letter.id}, delivered as {item} from {sender} to {me}"
        )
    signed = _signed(
        letter.sender, letter.recipient, letter.id, letter.ts, letter.body, letter.group
    )
    if not verify_signature(sender_key, signed, letter.signature):
        raise SealError(f"item {item} is not signed by the key of {sender}")
    message = Message(
        id=letter.id,
        sender=letter.sender,
        recipient=letter.recipient,
        body=letter.body,
        sent_at=letter.ts,
        shipped=True,
    )
    return message, letter.group


def receipt(identity: Identity, me: str, sender: str, ids: Sequence[str]) -> str:
    """Our signed statement that we stored ``ids`` from ``sender`` (base64url MessagePack)."""
    signature = identity.sign(_fields(_RECEIPT, me, sender, *ids))
    signed = SignedReceipt(recipient=me, sender=sender, ids=list(ids), signature=signature)
    return b64encode(msgspec.msgpack.encode(signed))


def open_receipt(me: str, *, recipient: str, sealed: str, recipient_key: str) -> list[str]:
    """The ids a receipt from ``recipient`` says they stored; SealError unless it was
    signed by ``recipient_key`` as ``recipient``, about messages from ``me``."""
    try:
        signed = _receipts.decode(b64decode(sealed))
    except RecursionError:
        raise SealError(f"a receipt from {recipient} is not one: nested too deeply") from None
    except (IdentityError, msgspec.DecodeError) as exc:  # ValidationError among them
        raise SealError(f"a receipt from {recipient} is not one: {exc}") from None
    payload = _fields(_RECEIPT, signed.recipient, signed.sender, *signed.ids)
    if (signed.recipient, signed.sender) != (recipient, me) or not verify_signature(
        recipient_key, payload, signed.signature
    ):
        raise SealError(f"a receipt said to come from {recipient} is not signed by them")
    return signed.ids


def check_mailbox_key(identity_key: str, mailbox_key: str, signature: str) -> bool:
    """True if ``mailbox_key`` is vouched for by the owner of ``identity_key``."""
    try:
        return verify_signature(identity_key, mailbox_key_payload(mailbox_key), signature)
    except IdentityError:
        return False
