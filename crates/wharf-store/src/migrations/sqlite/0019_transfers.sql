-- Client-side transfers. A transfer runs on one node at a time: the node holding its lease
-- (`owner`, until `lease_until_us`, fenced by `claims`). `requested_us` is a run asked for
-- (by hand, the Manager, an event) that no node has started yet.
CREATE TABLE transfer_leases (
    transfer TEXT PRIMARY KEY NOT NULL,
    owner TEXT,
    lease_until_us INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    requested_us INTEGER,
    requested_by TEXT
);
CREATE TABLE transfer_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer TEXT NOT NULL,
    node TEXT NOT NULL,
    trigger TEXT NOT NULL,
    state TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    finished_us INTEGER,
    files INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE INDEX transfer_runs_by_transfer ON transfer_runs (transfer, id);
-- One row per version of a source file (path, size, modification time): where its copy
-- stands. A version whose row is `done` is never sent again.
CREATE TABLE transfer_files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer TEXT NOT NULL,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_us INTEGER NOT NULL,
    state TEXT NOT NULL,
    destination TEXT,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_us INTEGER NOT NULL,
    run_id INTEGER,
    last_error TEXT,
    seen_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    UNIQUE (transfer, source, size, mtime_us)
);
CREATE INDEX transfer_files_by_state ON transfer_files (transfer, state, due_us);
