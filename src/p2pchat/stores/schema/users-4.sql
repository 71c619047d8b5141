-- Mail: the X25519 key the user publishes for sealed mail, signed by its identity key.
ALTER TABLE users ADD COLUMN mailbox_key TEXT;
ALTER TABLE users ADD COLUMN mailbox_sig TEXT;
