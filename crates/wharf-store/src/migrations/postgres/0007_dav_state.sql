CREATE TABLE dav_locks (
    token TEXT PRIMARY KEY NOT NULL,
    scope TEXT NOT NULL,
    path TEXT NOT NULL,
    account TEXT NOT NULL,
    owner TEXT,
    shared BIGINT NOT NULL,
    deep BIGINT NOT NULL,
    timeout_s BIGINT NOT NULL,
    expires_us BIGINT NOT NULL
);
CREATE INDEX dav_locks_scope ON dav_locks (scope, path);
CREATE INDEX dav_locks_account ON dav_locks (account, expires_us);
CREATE TABLE dav_props (
    scope TEXT NOT NULL,
    path TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    account TEXT NOT NULL,
    xml BYTEA NOT NULL,
    PRIMARY KEY (scope, path, namespace, name)
);
CREATE INDEX dav_props_account ON dav_props (account);
