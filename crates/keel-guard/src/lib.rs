//! Keeping a deployment honest while it serves.
//!
//! - [`slo`]: a service-level objective (latency and availability) tracked over sliding windows,
//!   with the error-budget burn rate of the Google SRE book (bad fraction over allowed fraction).
//! - [`output`]: output guardrails that catch a wildly wrong answer before it goes out (NaN,
//!   outside declared bounds, a score distribution that collapsed to one value).
//! - [`alert`]: alert rules over those signals (and drift or performance figures fed in by the
//!   caller), with pending/firing/resolved states, and notifications to webhooks as JSON or in
//!   Slack's format. A slow or failing webhook is timed out and counted; it never blocks the
//!   caller.
//! - [`webhook`]: the one webhook sender (alerts, schedule failures and events all use it),
//!   HMAC-SHA256 signatures, keel's events queued in the store's outbox and the deliverer that
//!   drains it with retries and backoff.
//!
//! The crate knows nothing of deployments, models or HTTP serving: keel-experiments feeds it
//! observations and acts on its verdicts (fallback, rollback).

pub mod alert;
pub mod output;
pub mod slo;
pub mod webhook;

pub use alert::{AlertEvent, AlertRule, AlertState, Condition, Notifier, Signals, WebhookFormat};
pub use output::{OutputGuard, OutputGuardSpec, Violation};
pub use slo::{SloSpec, SloStatus, SloTracker};

/// Errors of this crate: only invalid specifications (everything at run time is counted); each
/// has a [`kind`](GuardError::kind) and a stable public [`code`](GuardError::code).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

impl GuardError {
    /// What kind of failure this is: a specification the caller wrote.
    pub fn kind(&self) -> keel_types::ErrorKind {
        match self {
            GuardError::Invalid { .. } => keel_types::ErrorKind::InvalidArgument,
        }
    }

    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            GuardError::Invalid { .. } => "invalid_guard_spec",
        }
    }
}

impl keel_types::KeelError for GuardError {
    fn kind(&self) -> keel_types::ErrorKind {
        GuardError::kind(self)
    }

    fn code(&self) -> &'static str {
        GuardError::code(self)
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, GuardError>;

fn invalid(what: &'static str, why: impl Into<String>) -> GuardError {
    GuardError::Invalid { what, why: why.into() }
}
