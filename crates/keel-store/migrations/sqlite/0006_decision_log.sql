-- Deliberately empty: on PostgreSQL, 0006_decision_log.sql creates the tables of the
-- replicated decision log. An SQLite store keeps each deployment's decision log in local
-- files (crates/keel-experiments/src/wal.rs), so it has nothing to create; this file keeps the
-- two backends' migration numbers in step.
SELECT 1;
