//! keel-experiments' integration tests: deployments decide, learn, log, recover, archive and report.
//!
//! One test binary for the crate (each file a module): linking a binary per file cost the
//! test build a link of the whole dependency tree per file.

#[cfg(feature = "lake")]
mod archive_support;
mod pg_support;
mod support;

mod action_features;
mod archive;
mod archive_pg;
mod body_props;
mod control;
mod default_policy;
mod durable;
mod eligibility;
mod engine;
mod integrity;
mod metrics;
mod metrics_pg;
mod outcomes;
mod replicas;
mod revision;
mod segments;
mod shutdown;
