-- Mail: unread = received through the mailbox and not yet handed to the application;
-- deposited = left in the recipient's mailbox (not to be deposited again).
ALTER TABLE messages ADD COLUMN unread INTEGER NOT NULL DEFAULT 0 CHECK (unread IN (0, 1));
ALTER TABLE messages ADD COLUMN deposited INTEGER NOT NULL DEFAULT 0 CHECK (deposited IN (0, 1));
CREATE INDEX messages_unread ON messages (recipient, seq) WHERE unread = 1;
CREATE INDEX messages_undeposited ON messages (sender, seq) WHERE shipped = 0 AND deposited = 0;
