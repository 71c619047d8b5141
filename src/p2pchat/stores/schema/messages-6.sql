-- Groups. A group message is stored once, in messages, with its group's id (NULL for
-- one-to-one), the membership version it was sent under, and its notice (a membership
-- change or a leave; '' for a message). Its recipient is the group's id.
ALTER TABLE messages ADD COLUMN group_id TEXT;
ALTER TABLE messages ADD COLUMN group_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN notice TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_group ON messages (group_id, seq) WHERE group_id IS NOT NULL;
CREATE INDEX messages_group_unread ON messages (group_id, seq)
    WHERE unread = 1 AND group_id IS NOT NULL;
-- The groups this peer is (or was) in, as of their last membership version; members as
-- a JSON list; roster: the admin's signed roster of that version.
CREATE TABLE groups (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT    NOT NULL UNIQUE,
    name      TEXT    NOT NULL,
    admin     TEXT    NOT NULL,
    members   TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    roster    TEXT    NOT NULL,
    active    INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    announced INTEGER NOT NULL DEFAULT 0 CHECK (announced IN (0, 1))
);
-- Every roster kept, for the messages sent under it (resent later, they carry it).
CREATE TABLE group_rosters (
    group_id TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    roster   TEXT    NOT NULL,
    PRIMARY KEY (group_id, version)
);
-- Our group messages: one row per member each goes to; shipped when that member stored
-- it, deposited when left in its mailbox. The message's own shipped: all of them are.
CREATE TABLE group_deliveries (
    message_seq INTEGER NOT NULL REFERENCES messages (seq),
    member      TEXT    NOT NULL,
    shipped     INTEGER NOT NULL DEFAULT 0 CHECK (shipped IN (0, 1)),
    deposited   INTEGER NOT NULL DEFAULT 0 CHECK (deposited IN (0, 1)),
    PRIMARY KEY (message_seq, member)
);
CREATE INDEX group_deliveries_pending ON group_deliveries (member, message_seq)
    WHERE shipped = 0;
