-- An address for notifications about the account or group (NULL: none); wharf-admin checks
-- it is one plain address, safe in a mail header, before it is stored.
ALTER TABLE accounts ADD COLUMN email TEXT;
ALTER TABLE groups ADD COLUMN email TEXT;
