//! The conformance suite: every function here runs once per backend.

pub mod aliases;
pub mod approvals;
pub mod catalog;
pub mod changes;
pub mod deployments;
pub mod models;
pub mod schedules;
pub mod webhooks;
