"""Backends behind ``store.py``'s interfaces: SQLite (with its versioned ``schema/``), and
the pending-invitations interface with its in-memory book. Nothing here knows the network.
See docs/architecture.md."""
