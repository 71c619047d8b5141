-- Signalling server: one row per user name ever seen.
CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    addresses  TEXT    NOT NULL DEFAULT '[]',  -- JSON list of [host, port]
    online     INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    first_seen REAL    NOT NULL,
    last_seen  REAL    NOT NULL
);
CREATE INDEX users_online ON users (name) WHERE online = 1;
