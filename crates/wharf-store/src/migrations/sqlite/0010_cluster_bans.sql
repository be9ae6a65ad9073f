-- Bans every node follows: each change of a row takes the next version (a poll reads the
-- rows changed since its last look), a lifted ban stays as a tombstone until forgotten, and
-- the end of a ban is noted once.
ALTER TABLE bans ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bans ADD COLUMN lifted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bans ADD COLUMN end_noted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX bans_version ON bans (version);

-- Scored failures of every node, counted together over the ban window.
CREATE TABLE ban_failures (
    network TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    points INTEGER NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX ban_failures_network ON ban_failures (network, at_us);
CREATE INDEX ban_failures_at ON ban_failures (at_us);
