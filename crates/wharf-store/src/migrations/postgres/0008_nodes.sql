CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    incarnation TEXT NOT NULL,
    version TEXT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    services TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    started_us BIGINT NOT NULL,
    seen_us BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    stopped_us BIGINT
);
