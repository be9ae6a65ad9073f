CREATE TABLE nodes (
    name TEXT PRIMARY KEY NOT NULL,
    incarnation TEXT NOT NULL,
    version TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    services TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    seen_us INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    stopped_us INTEGER
);
