-- Received messages are told apart by (sender, id), no longer by id alone: an id that
-- someone else used first must not hide a message, nor be acknowledged for its sender.
-- SQLite cannot drop a UNIQUE constraint: the table is made anew, seq and flags kept.
-- (id, sender), id first: the one index serves the look-ups by id alone too (what we
-- sent is marked by id), so a message costs no more index work than before.
CREATE TABLE messages_new (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL,
    sender    TEXT    NOT NULL,
    recipient TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    sent_at   REAL    NOT NULL,
    shipped   INTEGER NOT NULL DEFAULT 0 CHECK (shipped IN (0, 1)),
    unread    INTEGER NOT NULL DEFAULT 0 CHECK (unread IN (0, 1)),
    deposited INTEGER NOT NULL DEFAULT 0 CHECK (deposited IN (0, 1)),
    UNIQUE (id, sender)
);
INSERT INTO messages_new (seq, id, sender, recipient, body, sent_at, shipped, unread, deposited)
    SELECT seq, id, sender, recipient, body, sent_at, shipped, unread, deposited FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_pair ON messages (sender, recipient, seq);
CREATE INDEX messages_unshipped ON messages (recipient, seq) WHERE shipped = 0;
CREATE INDEX messages_unread ON messages (recipient, seq) WHERE unread = 1;
CREATE INDEX messages_undeposited ON messages (sender, seq) WHERE shipped = 0 AND deposited = 0;
