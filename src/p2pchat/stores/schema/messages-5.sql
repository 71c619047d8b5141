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
-- History pages go backwards by (sent_at, id): read from this index, not sorted each time.
CREATE INDEX messages_pair_time ON messages (sender, recipient, sent_at, id);
