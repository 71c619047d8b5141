"""What both sides share and no side's logic: framed connections, sockets, identities and
TLS, sealed letters, and the task helpers. See docs/architecture.md."""
