CREATE TABLE groups (
    name TEXT PRIMARY KEY NOT NULL,
    home_template TEXT,
    create_home BIGINT NOT NULL DEFAULT 0,
    rules_json TEXT NOT NULL DEFAULT '[]',
    protocols_json TEXT NOT NULL DEFAULT '[]',
    upload_mode TEXT,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);

CREATE TABLE accounts (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT,
    home TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    groups_json TEXT NOT NULL DEFAULT '[]',
    keys_json TEXT NOT NULL DEFAULT '[]',
    rules_json TEXT NOT NULL DEFAULT '[]',
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);

CREATE TABLE admins (
    name TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    created_us BIGINT NOT NULL
);

CREATE TABLE events (
    seq BIGINT PRIMARY KEY NOT NULL,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    account TEXT,
    record_json TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX events_time ON events (time_us);
CREATE INDEX events_id ON events (id, time_us);
CREATE INDEX events_account ON events (account, time_us);
