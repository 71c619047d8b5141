-- Names are unique whatever their case: look-ups by name COLLATE NOCASE use this index.
CREATE INDEX users_name_nocase ON users (name COLLATE NOCASE);
