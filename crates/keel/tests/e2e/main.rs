//! The `keel` binary end to end: the command line, `keel serve`, prediction logs, a lake in an
//! S3 bucket, and restarts. One test binary for all of them, because every integration-test
//! binary links DataFusion and delta-rs again; [`support`] holds the scaffolding they share.

mod support;

mod alerts;
mod approvals;
mod batch;
mod batch_api;
mod campaign;
mod cli;
mod control_group;
mod decision_log;
mod jobs_grpc;
mod lake_s3;
mod learners;
mod metrics;
mod monitoring_api;
mod plan;
mod predlog;
mod receiver;
mod registry_api;
mod replicas;
mod restart;
mod schedules;
mod security;
