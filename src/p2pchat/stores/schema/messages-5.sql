-- Search: a full-text index of the bodies. FTS5 with external content: the text stays in
-- messages alone, the index holds only its words (unicode61: case and, with
-- remove_diacritics 2, accents ignored), each row under the message's seq. The triggers
-- write it in the very statement, hence the transaction, that writes the message; the
-- rebuild indexes what was stored before. (A later version that makes messages anew, as
-- version 4 did, must drop these triggers first and rebuild the index after.)
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body,
    content = 'messages',
    content_rowid = 'seq',
    columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
    INSERT INTO messages_fts (rowid, body) VALUES (new.seq, new.body);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
-- The latest sent_at of each block of 4,096 seqs: a search reads the index newest seq
-- first (its cheap order) and stops as soon as no older seq can hold a later sent_at
-- than the matches it keeps, instead of sorting every match of a common word. An upper
-- bound: a deleted message leaves it as it was.
CREATE TABLE messages_latest (
    block  INTEGER PRIMARY KEY,  -- seq >> 12
    latest REAL    NOT NULL
);
CREATE TRIGGER messages_latest_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_latest (block, latest) VALUES (new.seq >> 12, new.sent_at)
        ON CONFLICT (block) DO UPDATE SET latest = max(latest, excluded.latest);
END;
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
