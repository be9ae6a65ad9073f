CREATE TABLE bans (
    network TEXT PRIMARY KEY NOT NULL,
    banned_us INTEGER NOT NULL,
    until_us INTEGER NOT NULL,
    strikes INTEGER NOT NULL,
    reason TEXT NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX bans_until ON bans (until_us);
