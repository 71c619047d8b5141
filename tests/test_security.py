"""Nobody can pose as someone else, and nobody on the path can read a chat."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends.demo import command
from p2pchat.protocol import PROTOCOL_VERSION, Auth, Challenge, Error, Hello, Welcome
from p2pchat.shared.identity import b64encode, login_challenge_payload, tls13_only

from .conftest import (
    Launch,
    PeerFactory,
    RawClient,
    RecordingProxy,
    connect,
    server_certificate,
)

RawFactory = Callable[[int], Awaitable[RawClient]]


async def test_a_bot_run_twice_on_a_memory_store_is_told_how_to_keep_its_key(
    server: p2pchat.SignallingServer, tmp_path: Path
) -> None:
    where = ("127.0.0.1", server.port)
    async with p2pchat.Peer("bot", server=where):
        pass
    with pytest.raises(p2pchat.AuthenticationError) as refused:
        async with p2pchat.Peer("bot", server=where):  # the second run: a new key
            pass
    said = str(refused.value)
    assert "bot is registered to another key" in said
    assert "or choose another name" in said
    assert "Identity.load_or_create(PATH)" in said
    assert "SqliteMessageStore(PATH)" in said
    # Doing as told works from then on; a peer that keeps its key gets the server's advice.
    key = tmp_path / "keeper.key"
    async with p2pchat.Peer("keeper", server=where, identity=p2pchat.Identity.load_or_create(key)):
        pass
    async with p2pchat.Peer("keeper", server=where, identity=p2pchat.Identity.load_or_create(key)):
        pass
    with pytest.raises(p2pchat.AuthenticationError) as refused:
        await p2pchat.Peer("keeper", server=where, identity=p2pchat.Identity.generate()).start()
    assert "choose another name" in str(refused.value)
    assert "load_or_create" not in str(refused.value)


async def test_a_registered_name_with_another_key_is_refused(
    server: p2pchat.SignallingServer, make_peer: PeerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    with (
        caplog.at_level(logging.WARNING, logger="p2pchat"),
        pytest.raises(p2pchat.AuthenticationError, match="registered to another key"),
    ):
        await make_peer("alice")  # someone else's new key, while alice is online
    assert "refused a login as alice" in caplog.text
    # The rightful alice keeps working...
    chat_a, chat_b = await connect(alice, bob)
    await chat_a.send("still me")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "still me"
    # ...and once she is gone, her name is still hers only.
    identity = alice.identity
    await alice.close()
    with pytest.raises(p2pchat.AuthenticationError):
        await make_peer("alice")
    back = await make_peer("alice", identity=identity)
    assert back.fingerprint == identity.fingerprint


async def test_a_replayed_login_signature_is_refused(
    server: p2pchat.SignallingServer, raw_clients: RawFactory
) -> None:
    alice = p2pchat.Identity.generate()
    hello = Hello(version=PROTOCOL_VERSION, name="alice", certificate=b64encode(alice.certificate))
    first = await raw_clients(server.port)
    await first.send(hello)
    challenge = await first.recv()
    assert isinstance(challenge, Challenge)
    signature = alice.sign(login_challenge_payload(challenge.nonce, "alice", alice.key))
    await first.send(Auth(signature=signature))
    assert isinstance(await first.recv(), Welcome)
    await first.close()
    # Someone who captured that login replays it on a new connection.
    replay = await raw_clients(server.port)
    await replay.send(hello)
    fresh = await replay.recv()
    assert isinstance(fresh, Challenge)
    assert fresh.nonce != challenge.nonce
    await replay.send(Auth(signature=signature))
    refusal = await replay.recv_until(Error)
    assert refusal.code == "authentication_failed"
    assert await replay.closed_by_other_side()


@pytest.mark.parametrize("flaw", ["wrong-key", "no-certificate", "forged-certificate"])
async def test_a_login_that_does_not_prove_its_key_is_refused(
    server: p2pchat.SignallingServer, raw_clients: RawFactory, flaw: str
) -> None:
    alice, mallory = p2pchat.Identity.generate(), p2pchat.Identity.generate()
    certificate: str | None = b64encode(alice.certificate)
    if flaw == "no-certificate":
        certificate = None
    elif flaw == "forged-certificate":
        certificate = b64encode(alice.certificate[:-5] + b"\x00" * 5)
    client = await raw_clients(server.port)
    await client.send(Hello(version=PROTOCOL_VERSION, name="alice", certificate=certificate))
    answer = await client.recv()
    if isinstance(answer, Challenge):  # sign with a key other than the certificate's
        payload = login_challenge_payload(answer.nonce, "alice", alice.key)
        await client.send(Auth(signature=mallory.sign(payload)))
        answer = await client.recv_until(Error)
    assert isinstance(answer, Error)
    assert answer.code == "authentication_failed"
    assert "alice" not in server.online_users


async def test_whois_gives_the_key_the_server_holds(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    assert p2pchat.fingerprint(await alice.whois("bob")) == bob.fingerprint
    with pytest.raises(p2pchat.UnknownUser):
        await alice.whois("nobody")


async def test_a_contact_whose_key_changed_is_refused_unless_trusted(tmp_path: Path) -> None:
    alice_id = p2pchat.Identity.generate()

    def alice_on(server: p2pchat.SignallingServer) -> p2pchat.Peer:
        store = p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3")
        return p2pchat.Peer(
            "alice", server=("127.0.0.1", server.port), store=store, identity=alice_id
        )

    # alice and bob talk once: alice remembers bob's key.
    async with (
        p2pchat.SignallingServer(port=0) as first,
        alice_on(first) as alice,
        p2pchat.Peer("bob", server=("127.0.0.1", first.port)) as bob,
    ):
        await connect(alice, bob)
        assert await alice.known_key("bob") == bob.identity.key
    # Elsewhere, a server vouches a different key for "bob".
    async with p2pchat.SignallingServer(port=0) as second:
        impostor = p2pchat.Peer("bob", server=("127.0.0.1", second.port))
        async with alice_on(second) as alice, impostor:
            with pytest.raises(p2pchat.KeyChanged) as changed:
                await alice.invite("bob", timeout=5)
            assert changed.value.new_fingerprint == impostor.fingerprint
            assert changed.value.old_fingerprint != impostor.fingerprint
            assert "Check with bob by another channel" in str(changed.value)
            # The invitation was withdrawn: the impostor can no longer use it.
            stale = await asyncio.wait_for(impostor.next_invitation(), 5)
            with pytest.raises(p2pchat.InvitationGone):
                await stale.accept()
            # The other way round: alice refuses to dial a changed key too.
            inviting = asyncio.create_task(impostor.invite("alice", timeout=5))
            invitation = await asyncio.wait_for(alice.next_invitation(), 5)
            with pytest.raises(p2pchat.KeyChanged):
                await invitation.accept()
            await invitation.refuse("key changed")
            with pytest.raises(p2pchat.InviteRefused, match="key changed"):
                await inviting
            # Only an explicit decision trusts the new key.
            inviting = asyncio.create_task(alice.invite("bob", timeout=5, trust_new_key=True))
            chat_b = await (await asyncio.wait_for(impostor.next_invitation(), 5)).accept()
            await inviting
            assert chat_b.peer == "alice"
            assert await alice.known_key("bob") == impostor.identity.key


async def test_nothing_on_the_path_can_read_a_chat(
    server: p2pchat.SignallingServer, make_peer: PeerFactory
) -> None:
    # alice tells the server she is reached through a proxy, so the whole direct connection
    # passes through it, as through a router on the path.
    proxy = RecordingProxy()
    try:
        alice = await make_peer("alice", advertise=[await proxy.start()])
        proxy.target = alice.listening[0]
        bob = await make_peer("bob")
        chat_a, chat_b = await connect(alice, bob)
        secrets_said = ["the treasure is under the old oak", "meet at midnight, bring the map"]
        await chat_a.send(secrets_said[0])
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == secrets_said[0]
        await chat_b.send(secrets_said[1])
        assert (await asyncio.wait_for(chat_a.receive(), 5)).body == secrets_said[1]
        await chat_a.close()
        await chat_b.wait_closed()
        assert proxy.connections == 1
        assert len(proxy.captured) > 1000  # TLS handshake and records did pass through
        for text in [*secrets_said, "treasure", "midnight"]:
            assert text.encode() not in proxy.captured
        assert b'"type":"msg"' not in proxy.captured
        assert b'"ack"' not in proxy.captured
    finally:
        await proxy.close()


async def test_the_server_connection_over_tls_is_verified(tmp_path: Path) -> None:
    cert, key = server_certificate(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    async with p2pchat.SignallingServer(port=0, ssl=serving) as server:
        proxy = RecordingProxy(("127.0.0.1", server.port))
        host, port = await proxy.start()
        try:
            pinned = ssl.create_default_context(cafile=cert)
            async with p2pchat.Peer("alice", server=(host, port), server_ssl=pinned) as alice:
                assert await alice.online() == ["alice"]
            assert b"alice" not in proxy.captured  # even names are hidden on the path
            (tmp_path / "other").mkdir()
            other_cert, _ = server_certificate(tmp_path / "other")
            wrong = ssl.create_default_context(cafile=other_cert)
            with pytest.raises(p2pchat.ConnectionClosed, match="CERTIFICATE_VERIFY_FAILED"):
                await p2pchat.Peer("bob", server=(host, port), server_ssl=wrong).start()
        finally:
            await proxy.close()


async def test_the_server_command_offers_tls_1_3_with_x25519_only(
    tmp_path: Path, launch: Launch
) -> None:
    cert, key = server_certificate(tmp_path)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    server = await launch("server", [*command("p2pchat-server"), "--port", "0", "--memory", *tls])
    port = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))

    async def handshake(client: ssl.SSLContext) -> tuple[str | None, str | None]:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        try:
            tls = writer.get_extra_info("ssl_object")
            return tls.version(), tls.cipher()[0]
        finally:
            writer.close()

    def client(**settings: object) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=cert)
        for name, value in settings.items():
            setattr(context, name, value)
        return context

    version, _ = await handshake(client())
    assert version == "TLSv1.3"
    old = client(maximum_version=ssl.TLSVersion.TLSv1_2)
    old.set_ciphers("ECDHE+AESGCM:ECDHE+AES256:ECDHE+CHACHA20:@SECLEVEL=1")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await handshake(old)
    for group in ("secp521r1", "secp384r1"):  # P-521 (and P-384): groups it no longer takes
        weak = client()
        weak.set_ecdh_curve(group)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await handshake(weak)
    # And a peer that pins the certificate logs in over it as before.
    pinned = tls13_only(ssl.create_default_context(cafile=cert))
    async with p2pchat.Peer("alice", server=("127.0.0.1", port), server_ssl=pinned) as alice:
        assert await alice.online() == ["alice"]
