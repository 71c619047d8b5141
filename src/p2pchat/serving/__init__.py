"""The signalling server's parts (``server.py`` puts them together): logins, sessions,
the request loop, rendezvous and relays, the sealed mailbox, rates, stats and metrics.
They import shared/, stores/ and cluster/, never the peer's side. See
docs/architecture.md."""
