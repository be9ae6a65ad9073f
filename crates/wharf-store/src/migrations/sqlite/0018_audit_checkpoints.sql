-- Retention: a node's oldest records moved out of the store into a compressed archive
-- file, one row per file. The newest row of a node is its chain's checkpoint: the store's
-- records of that node go on from last_seq + 1, chained to last_hash.
CREATE TABLE audit_checkpoints (
    node TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    first_prev TEXT NOT NULL,
    last_hash TEXT NOT NULL,
    records INTEGER NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    made_us INTEGER NOT NULL,
    PRIMARY KEY (node, first_seq)
);
