-- `wharf events --node NAME` (and the Manager's node filter) read a node's newest records
-- from this index instead of the whole trail.
CREATE INDEX events_node_time ON events (node, time_us);
