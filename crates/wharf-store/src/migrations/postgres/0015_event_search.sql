-- Event search at scale. `protocol` and `outcome` become columns, so the Manager and
-- `wharf events` filter on them without reading records. Each filter's index holds the
-- time, then `seq` (the order pages are read in, newest first), then the other filtered
-- columns, so a combination of filters is answered by an index-only scan.
ALTER TABLE events ADD COLUMN protocol TEXT;
ALTER TABLE events ADD COLUMN outcome TEXT NOT NULL DEFAULT 'success';
UPDATE events SET
    protocol = record_json::json->>'protocol',
    outcome = COALESCE(record_json::json->>'outcome', 'success');
DROP INDEX events_time;
DROP INDEX events_id;
DROP INDEX events_account;
DROP INDEX events_node_time;
CREATE INDEX events_time ON events (time_us, seq);
CREATE INDEX events_id ON events (id, time_us, seq) INCLUDE (protocol, outcome, node);
CREATE INDEX events_account ON events (account, time_us, seq) INCLUDE (id, protocol, outcome, node);
CREATE INDEX events_protocol ON events (protocol, time_us, seq) INCLUDE (id, outcome, node);
CREATE INDEX events_node_time ON events (node, time_us, seq) INCLUDE (id, protocol, outcome);
CREATE INDEX events_failures ON events (time_us, seq) INCLUDE (id, protocol, node, account) WHERE outcome = 'failure';
