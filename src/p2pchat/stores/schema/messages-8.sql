-- Search's merging, kept off the write path under long bursts too. Under writes that
-- never paused, version 7 merged a level of the index at once, in the write that brought
-- it to 64 segments: a burst of 20,000 messages (about 100 write transactions) paid for a
-- whole merge in its midst, and the writer stopped for it (measured: 40-60 ms at 64
-- segments of 256 messages, 216 ms at 256). Now writes take up merging only once about
-- 256 segments wait (SqliteMessageStore.BEHIND), and then in steps, each in proportion to
-- what its write added; FTS5's own merge of a whole level in one write is left, at 1,024
-- segments, as a backstop alone. A search over 300 segments was measured at under 2 ms.
INSERT INTO messages_fts (messages_fts, rank) VALUES ('crisismerge', 1024);
