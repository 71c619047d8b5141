-- Identity: the Ed25519 public key (base64url) bound to the name on first login.
ALTER TABLE users ADD COLUMN key TEXT;
