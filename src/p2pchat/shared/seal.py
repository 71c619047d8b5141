"""Sealed mail and signed receipts: what the server stores without being able to read,
change or fake. No I/O here.

A message for someone away is sealed with HPKE (RFC 9180, base mode; DHKEM(X25519,
HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305) to the recipient's mailbox key. Inside the
seal, the sender signs (sender, recipient, id, time, body) with its identity key, so that
the recipient knows who wrote it and nobody can swap a part. The HPKE ``info`` binds the
seal to its recipient and item id: an item moved to another id or person does not open.

Several messages for one recipient, written one after another while they are away, go
as one sealed letter of a batch (a ``Bundle``: one seal, one signature over them all, one
deposit), so that a burst is not paced one deposit at a time. Its item id is named by
its messages' ids (``bundle_id``: the same batch, deposited again after a crash, is kept
once; another batch has another id) and tells it from a single letter (``l-`` and a
hash, never a UUID); the HPKE ``info`` differs, so neither opens as the other. A lone
message still goes as a single letter, which every p2pchat opens.

A group message's copy for a member who is away goes as a single group letter: its
``Letter`` also carries the group note (the admin-signed roster, about 40 bytes a member),
signed with the rest under its own context. It never joins a batch: a roster of 64 in
each of 256 messages would be some 650 KiB, far over a letter's 16 KiB, and a copy the
member cannot judge yet (an admin's key not known) must wait on the server alone, not
hold a batch of other messages there.

A receipt is the recipient's signature over (recipient, sender, ids): the only thing that
makes a sender mark a mailbox message delivered. The server passes it along and cannot
make one. A receipt of a batch covers its messages.
"""

from __future__ import annotations

import hashlib
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
    "Bundle",
    "Letter",
    "SignedReceipt",
    "bundle_id",
    "is_bundle",
    "open_bundle",
    "open_letter",
    "open_receipt",
    "open_seal",
    "receipt",
    "seal",
    "seal_bundle",
]

SUITE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_SEAL_INFO: Final = b"p2pchat mail v1"
_LETTER: Final = b"p2pchat letter v1"
_GROUP_LETTER: Final = b"p2pchat group letter v1"
_RECEIPT: Final = b"p2pchat receipt v1"
_BUNDLE_INFO: Final = b"p2pchat mail bundle v1"
_BUNDLE: Final = b"p2pchat bundle v1"
_BUNDLE_PREFIX: Final = "l-"
MAX_BUNDLE: Final = 256
"""Messages in one sealed batch: as many as one receipt names (``MAX_RECEIPT_IDS``)."""
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


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """One message of a ``Bundle`` (its sender and recipient are the bundle's)."""

    id: MessageId
    ts: Timestamp
    body: str


class Bundle(msgspec.Struct, frozen=True, kw_only=True):
    """What the seal of a batch holds: its messages, in order, and one signature of the
    sender over them all (and over who writes to whom)."""

    sender: UserName
    recipient: UserName
    messages: Annotated[list[Entry], msgspec.Meta(min_length=1, max_length=MAX_BUNDLE)]
    signature: Base64


# MessagePack, not JSON: a body is carried as it is, never grown by escaping.
_letters: Final = msgspec.msgpack.Decoder(Letter)
_bundles: Final = msgspec.msgpack.Decoder(Bundle)
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


def bundle_id(ids: Sequence[str]) -> str:
    """The item id of a batch of these message ids (in order)."""
    data = "\n".join(ids).encode("utf-8", "surrogatepass")
    return _BUNDLE_PREFIX + hashlib.sha256(data).hexdigest()[:40]


def is_bundle(item: str) -> bool:
    """Whether mail item ``item`` is a batch (else a single letter, item = message id)."""
    return item.startswith(_BUNDLE_PREFIX)


def _bundle_fields(sender: str, recipient: str, entries: Sequence[Entry]) -> bytes:
    parts: list[str | float] = [sender, recipient]
    for entry in entries:
        parts += (entry.id, entry.ts, entry.body)
    return _fields(_BUNDLE, *parts)


def seal_bundle(identity: Identity, messages: Sequence[Message], mailbox_key: str) -> str:
    """``messages`` (from ``identity``, to one recipient, at most ``MAX_BUNDLE``) sealed as
    one batch, item ``bundle_id`` of their ids, to the recipient's ``mailbox_key``."""
    if not 1 <= len(messages) <= MAX_BUNDLE:
        raise ValueError(f"a batch holds 1 to {MAX_BUNDLE} messages, not {len(messages)}")
    sender, recipient = messages[0].sender, messages[0].recipient
    if any((m.sender, m.recipient) != (sender, recipient) for m in messages):
        raise ValueError("a batch holds messages of one sender to one recipient")
    entries = [Entry(id=m.id, ts=m.sent_at, body=m.body) for m in messages]
    bundle = Bundle(
        sender=sender,
        recipient=recipient,
        messages=entries,
        signature=identity.sign(_bundle_fields(sender, recipient, entries)),
    )
    try:
        public = X25519PublicKey.from_public_bytes(b64decode(mailbox_key))
    except ValueError as exc:
        raise SealError(f"the mailbox key of {recipient} is not a key: {exc}") from None
    info = _fields(_BUNDLE_INFO, recipient, bundle_id([m.id for m in messages]))
    return b64encode(SUITE.encrypt(msgspec.msgpack.encode(bundle), public, info=info))


def open_bundle(
    identity: Identity, me: str, *, item: str, sender: str, sealed: str, sender_key: str
) -> list[Message]:
    """Open a batch the server says ``sender`` left for ``me``; check everything: that it
    opens with our key for this item, is named by its own ids, is addressed from
    ``sender`` to ``me`` and signed by ``sender_key``. Raises SealError otherwise. Each
    message's own rules (size) are the receiver's to check, one by one."""
    try:
        plain = SUITE.decrypt(
            b64decode(sealed), identity.mailbox_private_key, info=_fields(_BUNDLE_INFO, me, item)
        )
        bundle = _bundles.decode(plain)
    except RecursionError:
        raise SealError(f"item {item} from {sender} does not open: nested too deeply") from None
    except (InvalidTag, ValueError, IdentityError, msgspec.DecodeError) as exc:
        raise SealError(
            f"item {item} from {sender} does not open: {str(exc) or 'altered'}"
        ) from None
    ids = [entry.id for entry in bundle.messages]
    if (bundle.recipient, bundle.sender) != (me, sender) or bundle_id(ids) != item:
        raise SealError(
            f"item {item} is not what it claims: written by {bundle.sender} to "
            f"{bundle.recipient} as {bundle_id(ids)}, delivered as {item} from {sender} to {me}"
        )
    signed = _bundle_fields(bundle.sender, bundle.recipient, bundle.messages)
    if not verify_signature(sender_key, signed, bundle.signature):
        raise SealError(f"item {item} is not signed by the key of {sender}")
    return [
        Message(id=e.id, sender=sender, recipient=me, body=e.body, sent_at=e.ts, shipped=True)
        for e in bundle.messages
    ]


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
