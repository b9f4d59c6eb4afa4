-- Deliberately empty: on PostgreSQL, 0010_decision_log_archive.sql records the ranges of the
-- replicas' shared decision log archived to the lake. An SQLite store keeps each deployment's
-- decision log in local files, whose archived segments `archive.json` in the deployment's
-- folder records; this file keeps the two backends' migration numbers in step.
SELECT 1;
