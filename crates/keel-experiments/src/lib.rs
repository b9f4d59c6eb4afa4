//! Experiments: how teams test models and actions in production and how results flow back.
//!
//! A deployment is a named endpoint with variants (model versions or plain actions) and one
//! traffic policy (fixed weights with sticky assignment, shadow, canary, multi-armed and
//! contextual bandits from `keel-bandit`), an optional holdout control group, a reward with an
//! attribution window, and guardrails. This crate owns deciding, recording feedback, the
//! durable decision log that makes learning survive restarts, and the report.
//!
//! It must never depend on a transport (HTTP, gRPC): `keel-api` exposes it.

mod engine;
mod error;
mod manager;
mod monitor;
pub mod offline;
pub mod report;
pub mod score;
pub mod spec;
pub mod stats;
pub mod wal;
mod watch;

pub use engine::{DecisionOut, Event, Experiment, FeedbackOut, RewardIn};
pub use error::{ExperimentError, Result};
pub use manager::{Experiments, record_lineage, validate_name};
pub use monitor::{Batches, MonitorSpec, MonitorStatus, ReferenceSource};
pub use report::Report;
pub use spec::DeploymentSpec;
pub use wal::Durability;
pub use watch::{AlertStatus, Health, OutputGuardrailSpec};
