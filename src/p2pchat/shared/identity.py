"""Who a peer is: an Ed25519 key pair, its fingerprint, and the TLS contexts built on it.

A peer proves its name to the server by signing a fresh challenge, and proves itself to
another peer in TLS 1.3 with a self-signed certificate made from the same key. Each side of
a direct connection trusts exactly one certificate: the one the server vouched for in that
invitation. Nothing here does any network I/O.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import functools
import hashlib
import os
import shutil
import ssl
import stat
import tempfile
import weakref
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from ..errors import IdentityError

__all__ = [
    "NEW_KEY_EACH_RUN",
    "Identity",
    "b64decode",
    "b64encode",
    "certificate_key",
    "direct_tls_context",
    "fingerprint",
    "login_challenge_payload",
    "mailbox_key_payload",
    "verify_signature",
]

NEW_KEY_EACH_RUN = (
    "This peer made a new key as it started (no identity= and a memory store): to keep its "
    "name across runs, keep its key, with identity=p2pchat.Identity.load_or_create(PATH) or "
    "store=p2pchat.SqliteMessageStore(PATH) (the key kept beside it)"
)
"""Told to a peer whose name the server binds to another key, when its own key is new."""

# A certificate made from a key is the same every time: fixed fields, deterministic Ed25519.
_NOT_BEFORE: Final = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER: Final = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
_LOGIN_CONTEXT: Final = b"p2pchat login v1\x00"
_MAILBOX_KEY: Final = b"p2pchat mailbox key v1"


def b64encode(data: bytes) -> str:
    """URL-safe base64 without padding, as keys, nonces and signatures travel."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64decode(text: str) -> bytes:
    """The inverse of b64encode. Raises IdentityError on anything else."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise IdentityError(f"not base64: {exc}") from None


def fingerprint(key: str) -> str:
    """A public key's fingerprint, short enough to read aloud and compare.

    The first 125 bits of SHA-256 over the raw key, in base32, five groups of five.
    """
    digest = base64.b32encode(hashlib.sha256(b64decode(key)).digest()).decode("ascii")[:25]
    return "-".join(digest[i : i + 5] for i in range(0, 25, 5))


def login_challenge_payload(nonce: str, name: str, key: str) -> bytes:
    """What a peer signs to log in: bound to this protocol, this challenge, name and key."""
    return _LOGIN_CONTEXT + b64decode(nonce) + b"\x00" + name.encode() + b"\x00" + b64decode(key)


def mailbox_key_payload(mailbox_key: str) -> bytes:
    """What an identity signs to vouch for its mailbox key."""
    return _MAILBOX_KEY + b"\x00" + b64decode(mailbox_key)


def verify_signature(key: str, payload: bytes, signature: str) -> bool:
    """True if ``signature`` is ``key``'s Ed25519 signature of ``payload``."""
    try:
        public = Ed25519PublicKey.from_public_bytes(b64decode(key))
        public.verify(b64decode(signature), payload)
    except (InvalidSignature, ValueError, IdentityError):
        return False
    return True


def certificate_key(certificate: bytes, *, check: bool = True) -> str:
    """The public key of a self-signed Ed25519 certificate (DER), checking its signature
    (unless ``check`` is False: the server, which has the holder of the key sign a
    challenge anyway, and which the peers do not trust with the certificate).

    Raises IdentityError if it is not one.
    """
    if check:
        return _checked_key(certificate)
    return _certificate_key(certificate, check=False)


@functools.lru_cache(maxsize=1024)
def _checked_key(certificate: bytes) -> str:
    """``certificate_key`` with the check, remembered for the last 1,024 certificates
    that passed it (the same bytes always give the same answer; one that fails raises,
    and is not remembered): a contact's certificate comes with every invitation and
    every dial, and parsing and checking it cost 0.1 ms each time."""
    return _certificate_key(certificate, check=True)


def _certificate_key(certificate: bytes, *, check: bool) -> str:
    try:
        cert = x509.load_der_x509_certificate(certificate)
        public = cert.public_key()
        if not isinstance(public, Ed25519PublicKey):
            raise IdentityError("the certificate's key is not an Ed25519 key")
        if check:
            public.verify(cert.signature, cert.tbs_certificate_bytes)
    except (ValueError, InvalidSignature) as exc:
        raise IdentityError(
            f"not a valid self-signed certificate: {str(exc) or 'bad signature'}"
        ) from None
    return b64encode(public.public_bytes_raw())


class Identity:
    """A peer's key pair. ``key`` is the public key (base64url), ``fingerprint`` its
    fingerprint, ``certificate`` a self-signed X.509 certificate (DER) made from it."""

    def __init__(self, private_key: Ed25519PrivateKey, *, path: Path | None = None) -> None:
        self._private_key = private_key
        self.path = path
        self.key = b64encode(private_key.public_key().public_bytes_raw())
        self.fingerprint = fingerprint(self.key)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"p2pchat {self.fingerprint}")])
        self.certificate: bytes = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private_key.public_key())
            .serial_number(1)
            .not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(private_key, None)
            .public_bytes(serialization.Encoding.DER)
        )
        self._pem_path: str | None = None
        self._contexts: collections.OrderedDict[tuple[bytes, bool], ssl.SSLContext] = (
            collections.OrderedDict()
        )

    def __repr__(self) -> str:
        return f"<Identity {self.fingerprint}>"

    @classmethod
    def generate(cls) -> Identity:
        """A new key pair, kept only in memory."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        """Load a key file. Refused if anyone but its owner may read it."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise IdentityError(
                    f"{path} can be read by others (mode {stat.filemode(mode)}): anyone who "
                    f"reads it can pose as you. Make it private (chmod 600 {path}) or remove it "
                    "to make a new identity."
                )
            data = path.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read identity {path}: {exc.strerror}") from None
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise IdentityError(f"{path} is not a p2pchat identity: {exc}") from None
        if not isinstance(private_key, Ed25519PrivateKey):
            raise IdentityError(f"{path} does not hold an Ed25519 key")
        return cls(private_key, path=path)

    @classmethod
    def load_or_create(cls, path: str | Path) -> Identity:
        """Load the identity at ``path``, or make one there (mode 0600) on first use."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        identity.save(path)
        return cls.load(path)

    def save(self, path: str | Path) -> None:
        """Write the private key to a new file that only its owner can read."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise IdentityError(f"cannot create identity {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as file:
            file.write(self._private_pem())
        self.path = path

    def sign(self, payload: bytes) -> str:
        return b64encode(self._private_key.sign(payload))

    @functools.cached_property
    def mailbox_private_key(self) -> X25519PrivateKey:
        """The X25519 key that opens mail sealed to this identity.

        Derived from the identity key (HKDF-SHA256), so that the key file stays the one
        thing to keep. It is static: see docs/protocol.md for what that means.
        """
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAILBOX_KEY).derive(
            self._private_key.private_bytes_raw()
        )
        return X25519PrivateKey.from_private_bytes(seed)

    @functools.cached_property
    def mailbox_key(self) -> str:
        """The public half of ``mailbox_private_key`` (base64url), published at login."""
        return b64encode(self.mailbox_private_key.public_key().public_bytes_raw())

    @functools.cached_property
    def mailbox_signature(self) -> str:
        """This identity's signature of ``mailbox_key``: only its owner can publish it."""
        return self.sign(mailbox_key_payload(self.mailbox_key))

    def _private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def load_into(self, context: ssl.SSLContext) -> None:
        """Make ``context`` present this identity's certificate and key.

        ``ssl`` loads them only from a file. On Linux that file lives in memory (memfd),
        never on disk; elsewhere in a private temporary directory (0700, the file 0600)
        removed when this object goes away.
        """
        if self._pem_path is None:
            self._pem_path = self._write_pem(
                self._private_pem() + ssl.DER_cert_to_PEM_cert(self.certificate).encode()
            )
        context.load_cert_chain(self._pem_path)

    def _write_pem(self, pem: bytes) -> str:
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            descriptor = os.memfd_create("p2pchat-identity", os.MFD_CLOEXEC)
            os.write(descriptor, pem)
            weakref.finalize(self, os.close, descriptor)
            return f"/proc/self/fd/{descriptor}"
        directory = tempfile.mkdtemp(prefix="p2pchat-")
        weakref.finalize(self, shutil.rmtree, directory, True)
        path = os.path.join(directory, "identity.pem")
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
            file.write(pem)
        return path


CONTEXTS_KEPT: Final = 64
"""TLS contexts an identity keeps, one per (contact's certificate, side): making one
costs about 2 ms here (loading our key and certificate), a talk with someone talked
with before costs nothing more."""


def tls13_only(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make ``context`` offer and take TLS 1.3 only, with the X25519 key exchange: every
    client of a p2pchat server, and every peer, is p2pchat, so nothing older is needed
    (Mozilla's *modern* profile; the default also took TLS 1.2 with CBC suites, and the
    X448 and P-521 groups)."""
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    with contextlib.suppress(ValueError, ssl.SSLError):  # without X25519: OpenSSL's groups
        context.set_ecdh_curve("X25519")
    return context


def direct_tls_context(identity: Identity, trusted: bytes, *, server_side: bool) -> ssl.SSLContext:
    """TLS 1.3, both sides authenticated: present ``identity``, accept only ``trusted``
    (the other peer's certificate, DER, as vouched for by the server).

    Each context trusts that one certificate and nothing else, so one made for a contact
    is used again for that contact only (the last ``CONTEXTS_KEPT`` are kept)."""
    kept = identity._contexts
    if (context := kept.get((trusted, server_side))) is not None:
        kept.move_to_end((trusted, server_side))
        return context
    context = tls13_only(
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    )
    context.check_hostname = False  # peers have no host names: the pinned key is the check
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=trusted)
    identity.load_into(context)
    kept[(trusted, server_side)] = context
    while len(kept) > CONTEXTS_KEPT:
        kept.popitem(last=False)
    return context
