//! Deployments: how teams test models and actions in production and how results flow back.
//!
//! A deployment is a named endpoint with variants (model versions or plain actions) and one
//! traffic policy (fixed weights with sticky assignment, shadow, canary, multi-armed and
//! contextual bandits from `keel-bandit`), an optional holdout control group, a reward with an
//! attribution window, and guardrails. This crate owns deciding, recording feedback, the
//! durable decision log that makes learning survive restarts, and the report.
//!
//! It must never depend on a transport (HTTP, gRPC): `keel-api` exposes it.
//!
//! Where things live:
//! - `manager` ([`Deployments`]): the running deployments by name, each one
//!   `running::RunningDeployment` value (engine, variants, safeguards, drift monitor) replaced
//!   as a whole by a new revision; owner of the task tracker every background task runs on.
//! - `decide` ([`DecideRequest`]): deciding as named steps; `variants`: model variants (chosen,
//!   fallback and shadow inference); `safeguards`: SLO, output guards, alert rules; `drift`: the
//!   live drift monitor; `upkeep`: the once-a-second work (windows, alerts, drift), drained by
//!   [`Deployments::shutdown`].
//! - `engine` ([`Deployment`]): one deployment's policy state and durable log; `state` the
//!   state events change, `event` the events, `wal` the writer and `logfile` the framing,
//!   checking and repair of the log; [`Notice`] what guardrails and canaries did.
//! - [`offline`]: the same questions asked of what was logged: drift of a deployment's
//!   predictions against its reference (lake feature), and OPE of a candidate on its decision log.

pub mod anytime;
pub mod archive;
#[cfg(feature = "lake")]
pub mod archive_lake;
mod archive_pass;
mod batch;
mod checkpoint;
pub mod control;
mod decide;
mod drift;
mod engine;
mod error;
mod event;
mod features;
mod feedback;
mod files;
mod framing;
pub mod lift;
mod log;
pub mod logdir;
pub mod logfile;
mod manager;
mod metric_guard;
pub mod metric_report;
pub mod metric_spec;
mod metrics_feedback;
mod notice;
pub mod offline;
mod outcome;
pub mod pgcheck;
mod pglog;
mod replica;
pub mod report;
mod running;
mod safeguards;
pub mod score;
mod services;
pub mod snapshot;
pub mod spec;
mod state;
pub mod stats;
mod transition;
mod upkeep;
mod variants;
mod waiting;
pub mod wal;

pub use batch::{RunDecision, UnitContext};
pub use control::{ControlArm, ControlPolicy, ControlSpec};
pub use decide::DecideRequest;
pub use drift::{Batches, MonitorSpec, MonitorStatus, ReferenceSource};
pub use engine::{Deployment, Opened};
pub use error::{DeploymentError, Result};
pub use event::Event;
pub use manager::{
    DecidedBatch, Deployments, FailedDeployment, PreparedRevision, prepare_revision, record_lineage, validate_name,
};
pub use notice::Notice;
pub use outcome::{ClosedWindows, DecisionOut, FeedbackIn, FeedbackOut, RewardIn};
pub use report::Report;
pub use safeguards::{AlertStatus, Health};
pub use spec::{DeploymentSpec, OutputGuardsSpec};
pub use wal::{Durability, LogOptions};
