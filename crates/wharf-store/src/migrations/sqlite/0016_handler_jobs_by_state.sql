-- The handler queue listed by state, newest first: a few failed jobs among millions done.
CREATE INDEX handler_jobs_state ON handler_jobs (state, id);
