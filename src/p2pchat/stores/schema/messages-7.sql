-- Search's index keeps its merging off the write path. Every write transaction adds a
-- segment to the index; FTS5 by default merges them as they come (4 at a time), which
-- was half of what indexing a message cost (measured: 10.9 us a message stored 256 per
-- transaction, 7.3 without). Now a write only adds its segment; the store merges
-- segments 16 at a time once it has been idle a moment (SqliteMessageStore._tidy), and
-- a level is merged at once, in the write that brings it to 64 segments, only under
-- writes that never pause. Until merged, a search looks in a few more segments. All
-- three settings live in the index's own config table.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('automerge', 0);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('crisismerge', 64);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('usermerge', 16);
