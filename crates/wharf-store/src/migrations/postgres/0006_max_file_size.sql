ALTER TABLE accounts ADD COLUMN max_file_size BIGINT;
ALTER TABLE groups ADD COLUMN max_file_size BIGINT;
