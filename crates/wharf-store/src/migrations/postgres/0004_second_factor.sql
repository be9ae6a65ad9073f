ALTER TABLE accounts ADD COLUMN second_factor_json TEXT;
ALTER TABLE accounts ADD COLUMN require_second_factor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN require_second_factor BIGINT NOT NULL DEFAULT 0;
