-- Event search at scale. `protocol` and `outcome` become columns, so the Manager and
-- `wharf events` filter on them without reading records. Each filter's index holds the
-- time, then `seq` (the order pages are read in, newest first), then the other filtered
-- columns: a combination of filters is tested on index entries alone, never on records.
ALTER TABLE events ADD COLUMN protocol TEXT;
ALTER TABLE events ADD COLUMN outcome TEXT NOT NULL DEFAULT 'success';
UPDATE events SET
    protocol = json_extract(record_json, '$.protocol'),
    outcome = COALESCE(json_extract(record_json, '$.outcome'), 'success');
DROP INDEX events_time;
DROP INDEX events_id;
DROP INDEX events_account;
DROP INDEX events_node_time;
CREATE INDEX events_time ON events (time_us, seq);
CREATE INDEX events_id ON events (id, time_us, seq, protocol, outcome, node);
CREATE INDEX events_account ON events (account, time_us, seq, id, protocol, outcome, node);
CREATE INDEX events_protocol ON events (protocol, time_us, seq, id, outcome, node);
CREATE INDEX events_node_time ON events (node, time_us, seq, id, protocol, outcome);
CREATE INDEX events_failures ON events (time_us, seq, id, protocol, node) WHERE outcome = 'failure';
