-- Peer: every message sent or received. seq keeps the local order.
CREATE TABLE messages (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL UNIQUE,
    sender    TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    sent_at   REAL    NOT NULL,
    shipped   INTEGER NOT NULL DEFAULT 0 CHECK (shipped IN (0, 1))
);
CREATE INDEX messages_pair ON messages (sender, recipient, seq);
CREATE INDEX messages_unshipped ON messages (recipient, seq) WHERE shipped = 0;
