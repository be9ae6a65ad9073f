-- The configuration every node of a cluster shares, one row per published revision.
CREATE TABLE cluster_configuration (
    revision BIGINT PRIMARY KEY NOT NULL,
    text TEXT NOT NULL,
    admin TEXT NOT NULL,
    published_us BIGINT NOT NULL
);
