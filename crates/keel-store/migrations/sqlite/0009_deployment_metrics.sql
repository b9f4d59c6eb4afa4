-- Deliberately empty: on PostgreSQL, 0009_deployment_metrics.sql creates the table that keeps
-- each (decision, metric) value once across replicas. An SQLite store keeps each deployment's
-- decision log in local files served by one process, whose state answers that; this file
-- keeps the two backends' migration numbers in step.
SELECT 1;
