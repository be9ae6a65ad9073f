-- Manager administrators get a role (admin, operator or auditor: the Manager checks the
-- text), can be disabled, and can enroll a second factor like accounts do.
ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE admins ADD COLUMN enabled BIGINT NOT NULL DEFAULT 1;
ALTER TABLE admins ADD COLUMN second_factor_json TEXT;
ALTER TABLE admins ADD COLUMN require_second_factor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE admins ADD COLUMN updated_us BIGINT NOT NULL DEFAULT 0;
-- Administrators made before this migration were last changed when they were made.
UPDATE admins SET updated_us = created_us;

-- API tokens of the Manager's REST interface: only the SHA-256 of a token is kept, and a
-- request finds its token by that digest (the UNIQUE index).
CREATE TABLE admin_tokens (
    name TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    admin TEXT NOT NULL,
    role TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT NOT NULL,
    used_us BIGINT
);
-- Removing an administrator removes their tokens.
CREATE INDEX admin_tokens_admin ON admin_tokens (admin);
