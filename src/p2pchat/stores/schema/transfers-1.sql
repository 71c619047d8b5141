-- File transfers of one peer, both ways: what each is, where it stands, and (for one
-- coming in) where its bytes go. ``done`` is the last acknowledged offset: a recipient's
-- resume point, synced to disk before it is acknowledged.
CREATE TABLE transfers (
    owner     TEXT    NOT NULL,
    id        TEXT    NOT NULL,
    contact   TEXT    NOT NULL,
    outgoing  INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    name      TEXT    NOT NULL,
    size      INTEGER NOT NULL CHECK (size >= 0),
    sha256    TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    done      INTEGER NOT NULL DEFAULT 0,
    path      TEXT    NOT NULL DEFAULT '',
    target    TEXT    NOT NULL DEFAULT '',
    code      TEXT    NOT NULL DEFAULT '',
    reason    TEXT    NOT NULL DEFAULT '',
    told      INTEGER NOT NULL DEFAULT 0 CHECK (told IN (0, 1)),
    created   REAL    NOT NULL,
    updated   REAL    NOT NULL,
    PRIMARY KEY (owner, id)
);
CREATE INDEX transfers_recent ON transfers (owner, updated);
CREATE INDEX transfers_open ON transfers (owner, contact)
    WHERE state IN ('offered', 'accepted') OR told = 0;
