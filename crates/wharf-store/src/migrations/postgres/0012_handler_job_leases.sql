-- Handler jobs are claimed by any node of a cluster, for a lease: `owner` is the node
-- holding the job, `lease_until_us` when its hold ends unless renewed, `claims` how many
-- times it was taken (the fence a holder's later writes must match).
ALTER TABLE handler_jobs ADD COLUMN owner TEXT;
ALTER TABLE handler_jobs ADD COLUMN lease_until_us BIGINT;
ALTER TABLE handler_jobs ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
-- Jobs left running before leases existed were cut off by the stop that upgraded the
-- server: their lease has run out already.
UPDATE handler_jobs SET owner = node, lease_until_us = 0 WHERE state = 'running';
DROP INDEX handler_jobs_due;
CREATE INDEX handler_jobs_due ON handler_jobs (state, due_us);
CREATE INDEX handler_jobs_owner ON handler_jobs (owner, state);
