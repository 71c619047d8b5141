"""The peer's parts (``peer.py`` puts them together): the link to the server, invitations,
reaching the other side (dialling, reversal, hole punching), conversations, delivery and
the postbox of sealed letters. They import shared/ and stores, never the server's side.
See docs/architecture.md."""
