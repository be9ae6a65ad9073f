ALTER TABLE accounts ADD COLUMN addresses_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN expires_us BIGINT;
ALTER TABLE groups ADD COLUMN addresses_json TEXT NOT NULL DEFAULT '{}';
