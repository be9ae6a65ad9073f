CREATE TABLE bans (
    network TEXT PRIMARY KEY NOT NULL,
    banned_us BIGINT NOT NULL,
    until_us BIGINT NOT NULL,
    strikes BIGINT NOT NULL,
    reason TEXT NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX bans_until ON bans (until_us);
