-- Signalling server: sealed items kept for their recipient until settled or expired.
CREATE TABLE items (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT    NOT NULL,
    item      TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('msg', 'receipt')),
    sender    TEXT    NOT NULL,
    sealed    TEXT    NOT NULL,
    at        REAL    NOT NULL,
    expires   REAL    NOT NULL,
    UNIQUE (recipient, item)
);
CREATE INDEX items_recipient ON items (recipient, seq);
CREATE INDEX items_expires ON items (expires);
