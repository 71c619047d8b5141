"""Identities on their own: keys, key files, fingerprints, certificates. No sockets."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

import p2pchat
from p2pchat.shared.identity import (
    CONTEXTS_KEPT,
    Identity,
    certificate_key,
    direct_tls_context,
    login_challenge_payload,
    verify_signature,
)

FINGERPRINT = re.compile(r"^[A-Z2-7]{5}(-[A-Z2-7]{5}){4}$")


def test_a_fingerprint_is_short_grouped_and_distinct() -> None:
    one, two = p2pchat.Identity.generate(), p2pchat.Identity.generate()
    assert FINGERPRINT.match(one.fingerprint)
    assert one.fingerprint != two.fingerprint
    assert p2pchat.fingerprint(one.key) == one.fingerprint


def test_load_or_create_makes_a_private_file_and_loads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "alice.key"
    made = p2pchat.Identity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = p2pchat.Identity.load_or_create(path)
    assert (again.key, again.fingerprint) == (made.key, made.fingerprint)
    assert again.certificate == made.certificate  # the same certificate every time


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "alice.key"
    p2pchat.Identity.load_or_create(path)
    path.chmod(mode)
    with pytest.raises(p2pchat.IdentityError, match=r"can be read by others.*chmod 600"):
        p2pchat.Identity.load_or_create(path)


def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alice.key"
    path.write_bytes(b"-----BEGIN NONSENSE-----\n")
    path.chmod(0o600)
    with pytest.raises(p2pchat.IdentityError, match="not a p2pchat identity"):
        p2pchat.Identity.load(path)


def test_signatures_prove_the_key_and_nothing_else() -> None:
    alice, mallory = p2pchat.Identity.generate(), p2pchat.Identity.generate()
    payload = login_challenge_payload("AAAA", "alice", alice.key)
    signature = alice.sign(payload)
    assert verify_signature(alice.key, payload, signature)
    assert not verify_signature(mallory.key, payload, signature)
    assert not verify_signature(
        alice.key, login_challenge_payload("BBBB", "alice", alice.key), signature
    )
    assert not verify_signature(alice.key, payload, mallory.sign(payload))


def test_a_certificate_gives_its_key_and_a_forged_one_is_refused() -> None:
    alice = p2pchat.Identity.generate()
    assert certificate_key(alice.certificate) == alice.key
    forged = bytearray(alice.certificate)
    forged[-5] ^= 0xFF  # inside the signature
    for _ in range(2):  # the good one remembered, the forged one refused every time
        assert certificate_key(alice.certificate) == alice.key
        with pytest.raises(
            p2pchat.IdentityError, match="not a valid self-signed certificate: bad signature"
        ):
            certificate_key(bytes(forged))
    assert certificate_key(bytes(forged), check=False) == alice.key  # (the server's reading)
    with pytest.raises(p2pchat.IdentityError):
        certificate_key(b"not a certificate")


def test_a_tls_context_trusts_one_certificate_and_is_kept_for_that_one_only() -> None:
    me, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    for_bob = direct_tls_context(me, bob.certificate, server_side=True)
    assert direct_tls_context(me, bob.certificate, server_side=True) is for_bob
    assert direct_tls_context(me, bob.certificate, server_side=False) is not for_bob
    for_carol = direct_tls_context(me, carol.certificate, server_side=True)
    assert for_carol is not for_bob
    # Each trusts its one contact's certificate: never shared between contacts.
    assert [c["subject"] for c in for_bob.get_ca_certs()] != [
        c["subject"] for c in for_carol.get_ca_certs()
    ]
    assert len(for_bob.get_ca_certs()) == len(for_carol.get_ca_certs()) == 1
    for _ in range(CONTEXTS_KEPT + 1):  # bounded: the oldest go
        direct_tls_context(me, Identity.generate().certificate, server_side=True)
    assert direct_tls_context(me, bob.certificate, server_side=True) is not for_bob
