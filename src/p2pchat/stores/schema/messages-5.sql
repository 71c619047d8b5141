-- Search: a full-text index of the bodies. FTS5 with external content: the text stays in
-- messages alone, the index holds only its words (unicode61: case and, with
-- remove_diacritics 2, accents ignored), each row under the message's seq. The store
-- indexes new rows at the end of each write transaction, in it (seq > up_to of
-- messages_indexed: SqliteMessageStore._finish); the triggers keep the index right when
-- a body changes or goes; the rebuild indexes what was stored before. (A later version
-- that makes messages anew, as version 4 did, must drop these triggers first and
-- rebuild the index after.)
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body,
    content = 'messages',
    content_rowid = 'seq',
    columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
CREATE TABLE messages_indexed (up_to INTEGER NOT NULL);  -- one row: the last seq indexed
INSERT INTO messages_indexed (up_to) SELECT coalesce(max(seq), 0) FROM messages;
-- (A row not indexed yet, stored by this very transaction, is left to its end.)
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages
WHEN old.seq <= (SELECT up_to FROM messages_indexed) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages
WHEN old.seq <= (SELECT up_to FROM messages_indexed) BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
END;
-- The latest sent_at of each block of 4,096 seqs: a search reads the index newest seq
-- first (its cheap order) and stops as soon as no older seq can hold a later sent_at
-- than the matches it keeps, instead of sorting every match of a common word. Kept with
-- the index, in the same transaction. An upper bound: a deleted message leaves it.
CREATE TABLE messages_latest (
    block  INTEGER PRIMARY KEY,  -- seq >> 12
    latest REAL    NOT NULL
);
CREATE TRIGGER messages_latest_update AFTER UPDATE OF sent_at ON messages BEGIN
    INSERT INTO messages_latest (block, latest) VALUES (new.seq >> 12, new.sent_at)
        ON CONFLICT (block) DO UPDATE SET latest = max(latest, excluded.latest);
END;
INSERT INTO messages_latest (block, latest)
    SELECT seq >> 12, max(sent_at) FROM messages GROUP BY seq >> 12;
-- History pages go backwards by (sent_at, id): read from this index, not sorted each time.
-- It takes the place of messages_pair (sender, recipient, seq), whose look-ups it serves
-- as well (seq, the rowid, ends every index entry): a stored message updates as many
-- indexes as before.
DROP INDEX messages_pair;
CREATE INDEX messages_pair_time ON messages (sender, recipient, sent_at, id);
