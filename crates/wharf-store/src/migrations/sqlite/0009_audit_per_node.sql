-- Every node keeps its own hash chain: `node` names the chain a record belongs to and
-- `node_seq` numbers it, gap-free, within that chain. `seq` stays the trail's global order.
ALTER TABLE events ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN node_seq INTEGER NOT NULL DEFAULT 0;
-- The records written before form one chain (numbered by `seq`, each over the one before):
-- it becomes the chain of the node that wrote last, so it goes on unbroken there.
UPDATE events SET
    node = COALESCE((SELECT json_extract(record_json, '$.node') FROM events ORDER BY seq DESC LIMIT 1), ''),
    node_seq = seq;
CREATE UNIQUE INDEX events_node_seq ON events (node, node_seq);
