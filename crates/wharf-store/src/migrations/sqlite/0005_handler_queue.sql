CREATE TABLE handler_cursors (
    node TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE handler_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    handler TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    finished_us INTEGER,
    last_error TEXT,
    UNIQUE (handler, event_seq)
);
CREATE INDEX handler_jobs_due ON handler_jobs (node, state, due_us);
