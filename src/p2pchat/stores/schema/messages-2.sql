-- Identity: the key each contact had when first talked with (like ssh's known_hosts).
CREATE TABLE contacts (
    user       TEXT NOT NULL,  -- the local user
    contact    TEXT NOT NULL,
    key        TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    PRIMARY KEY (user, contact)
);
