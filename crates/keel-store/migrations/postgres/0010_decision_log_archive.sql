-- The ranges of a deployment's decision log in PostgreSQL that were archived to the lake table
-- `decision_log` (crates/keel-experiments/src/pglog/archive.rs): what the file log's
-- `archive.json` manifest records, for the log the replicas share. A range's rows are deleted
-- from `deployment_log` in the transaction that inserts its row here, after the lake commit
-- holding them is durable; readers of the whole history read the range back from the lake and
-- check its count, sequence numbers and checksum against this row.
CREATE TABLE deployment_log_archived (
    deployment     TEXT   NOT NULL,
    first_seq      BIGINT NOT NULL,
    last_seq       BIGINT NOT NULL,
    records        BIGINT NOT NULL,
    -- XXH3-64 (hex) of the range's records framed as the file log frames them.
    xxh3           TEXT   NOT NULL,
    -- The version of `decision_log` that holds them (NULL: found there by a later pass).
    lake_version   BIGINT,
    newest_ts_ms   BIGINT NOT NULL,
    archived_at_ms BIGINT NOT NULL,
    -- The `keel serve` process that archived it.
    replica        TEXT   NOT NULL,
    PRIMARY KEY (deployment, first_seq)
);
