ALTER TABLE accounts ADD COLUMN max_file_size INTEGER;
ALTER TABLE groups ADD COLUMN max_file_size INTEGER;
