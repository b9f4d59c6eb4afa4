-- The decision log of deployments served from a PostgreSQL store (see
-- crates/keel-experiments/src/pglog.rs): every replica of `keel serve` on this store appends
-- its decisions and rewards here and applies every replica's events in `seq` order.
-- The SQLite store keeps each deployment's log in local files instead: its 0006 is a no-op.

-- One row per deployment: the last sequence number given out. A writer locks this row for
-- its whole transaction, so sequence numbers are given out in commit order and what a reader
-- sees of a deployment's log is always a gap-free prefix.
CREATE TABLE deployment_log_heads (
    deployment TEXT   NOT NULL PRIMARY KEY,
    last_seq   BIGINT NOT NULL
);

-- The events (the same JSON records as the file log), one row each.
CREATE TABLE deployment_log (
    deployment TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    -- The `keel serve` process that wrote it.
    replica    TEXT   NOT NULL,
    -- XXH3-64 of `body` seeded with `seq` (as i64 bits): damage is refused, never applied.
    hash       BIGINT NOT NULL,
    body       TEXT   NOT NULL,
    PRIMARY KEY (deployment, seq)
);

-- One reward per decision, whichever replica received it: idempotency (the same reward again
-- counts once) and conflicts (another value is refused) hold across replicas.
CREATE TABLE deployment_rewards (
    deployment  TEXT             NOT NULL,
    decision_id UUID             NOT NULL,
    reward      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (deployment, decision_id)
);

-- Checksummed snapshots of a deployment's state (the format of the file snapshots), so a
-- start replays only the events after the newest one.
CREATE TABLE deployment_snapshots (
    deployment TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    replica    TEXT   NOT NULL,
    taken_at   BIGINT NOT NULL,
    body       BYTEA  NOT NULL,
    PRIMARY KEY (deployment, seq)
);
