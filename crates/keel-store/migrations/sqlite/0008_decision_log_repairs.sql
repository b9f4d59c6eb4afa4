-- Deliberately empty: on PostgreSQL, 0008_decision_log_repairs.sql creates the side tables a
-- repair of a decision log in PostgreSQL moves rows into. An SQLite store keeps each
-- deployment's decision log in local files (a repair moves bytes into a sibling file), so it
-- has nothing to create; this file keeps the two backends' migration numbers in step.
SELECT 1;
