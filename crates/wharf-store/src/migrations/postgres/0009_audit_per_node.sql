-- Every node keeps its own hash chain: `node` names the chain a record belongs to and
-- `node_seq` numbers it, gap-free, within that chain. `seq` stays the trail's global order,
-- now drawn from a sequence so that nodes appending at once need not wait for each other.
ALTER TABLE events ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN node_seq BIGINT NOT NULL DEFAULT 0;
-- The records written before form one chain (numbered by `seq`, each over the one before):
-- it becomes the chain of the node that wrote last, so it goes on unbroken there.
UPDATE events SET
    node = COALESCE((SELECT record_json::json->>'node' FROM events ORDER BY seq DESC LIMIT 1), ''),
    node_seq = seq;
CREATE UNIQUE INDEX events_node_seq ON events (node, node_seq);
CREATE SEQUENCE events_seq;
SELECT setval('events_seq', COALESCE((SELECT MAX(seq) FROM events), 0) + 1, false);
