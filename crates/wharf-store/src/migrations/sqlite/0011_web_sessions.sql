CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    account TEXT NOT NULL,
    login_name TEXT NOT NULL,
    method TEXT NOT NULL,
    second_factor INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    csrf_hash TEXT,
    since_us INTEGER NOT NULL,
    used_us INTEGER NOT NULL,
    idle_us INTEGER NOT NULL,
    idle_until_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    tries_left INTEGER NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_us);
CREATE INDEX web_sessions_idle ON web_sessions (idle_until_us);
CREATE INDEX web_sessions_service ON web_sessions (service, kind, used_us);
