-- Repairs of a deployment's decision log in PostgreSQL (`keel deployment repair NAME
-- --from-seq N`, crates/keel-experiments/src/pgcheck.rs): the rows from the cut on are moved
-- here, never deleted, with the repair they belong to; the change log records who repaired
-- what. The SQLite store keeps its logs in files (a repair moves bytes into a sibling file):
-- its 0008 is a no-op.

-- The log rows moved aside, exactly as they were (damaged ones included).
CREATE TABLE deployment_log_repaired (
    repair_id   TEXT   NOT NULL,
    repaired_at BIGINT NOT NULL,
    deployment  TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    replica     TEXT   NOT NULL,
    hash        BIGINT NOT NULL,
    body        TEXT   NOT NULL,
    PRIMARY KEY (repair_id, deployment, seq)
);

-- The rewards whose events were moved aside (so the same reward sent again counts, as the
-- log no longer holds it).
CREATE TABLE deployment_rewards_repaired (
    repair_id   TEXT             NOT NULL,
    deployment  TEXT             NOT NULL,
    decision_id UUID             NOT NULL,
    reward      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repair_id, deployment, decision_id)
);

-- The snapshots that covered records moved aside.
CREATE TABLE deployment_snapshots_repaired (
    repair_id  TEXT   NOT NULL,
    deployment TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    replica    TEXT   NOT NULL,
    taken_at   BIGINT NOT NULL,
    body       BYTEA  NOT NULL,
    PRIMARY KEY (repair_id, deployment, seq)
);
