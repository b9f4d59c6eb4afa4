-- Metrics other than the decision metric on a deployment served from a PostgreSQL store
-- (crates/keel-experiments/src/pglog/writer.rs): one value per (decision, metric), whichever
-- replica received it, so idempotency (the same value again counts once) and conflicts
-- (another value is refused) hold across replicas, as `deployment_rewards` does for the
-- decision metric. A writer inserts a batch's values in the transaction that logs their
-- `Metrics` events; values whose event is not logged are never left here.
CREATE TABLE deployment_metrics (
    deployment  TEXT             NOT NULL,
    decision_id UUID             NOT NULL,
    metric      TEXT             NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (deployment, decision_id, metric)
);

-- The values whose `Metrics` events a repair moved aside (so the same value sent again
-- counts, as the log no longer holds it).
CREATE TABLE deployment_metrics_repaired (
    repair_id   TEXT             NOT NULL,
    deployment  TEXT             NOT NULL,
    decision_id UUID             NOT NULL,
    metric      TEXT             NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (repair_id, deployment, decision_id, metric)
);
