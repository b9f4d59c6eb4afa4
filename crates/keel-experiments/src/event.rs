//! The events of a deployment's durable log: the on-disk format (one JSON line each).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An event of the log. Field names are short: there is one line per decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
// Decisions are most records and are built, applied and framed at once; boxing the variant
// would add an allocation per decision for no saving (events are not kept in memory).
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The deployment started serving this revision.
    Revision { seq: u64, ts: i64, rev: i64, reset: bool },
    Decision {
        seq: u64,
        ts: i64,
        id: Uuid,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        unit: Option<String>,
        /// The batch run that made this decision (`keel batch decide`), if any.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        run: Option<String>,
        /// The variants (indices) the decision was restricted to; empty: all of them.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        el: Vec<usize>,
        /// Index into the deployment's variants; absent when the unit got no action (a unit of
        /// a `"policy": "none"` control group, then `hold` is set).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        v: Option<usize>,
        /// Probability of this variant (or of no action) under the logging distribution.
        p: f64,
        /// Policy version (updates applied) when decided.
        pv: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        hold: bool,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        x: Vec<f64>,
        /// Probabilities of every serving variant (arm order), for off-policy evaluation.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        probs: Vec<f64>,
        /// The context as sent, for deployments that declare no features (so candidates that
        /// use it can be evaluated offline later).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ctx: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pred: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        shadow: Option<serde_json::Value>,
    },
    Reward {
        seq: u64,
        ts: i64,
        id: Uuid,
        r: f64,
        /// True when the window closed and the default reward was applied.
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        default: bool,
    },
    /// Values of metrics other than the decision metric for one decision (those it did not
    /// have yet: each (decision, metric) is counted once). Logs written before metrics existed
    /// have none.
    Metrics {
        seq: u64,
        ts: i64,
        id: Uuid,
        m: std::collections::BTreeMap<String, f64>,
    },
    /// A variant paused by a guardrail (or a canary rolled back).
    Pause { seq: u64, ts: i64, v: usize, why: String },
    /// A canary moved to a step (index into `canary.steps`).
    CanaryStep { seq: u64, ts: i64, step: usize },
    /// The definition in force from here on (written after each `Revision`), so a replay reads
    /// every event under the spec it was logged with: variant indices, context and the
    /// variants' features. A revision that changes the variants keeps the learned state (the
    /// variants that continue keep theirs, by name) unless the context, the variants'
    /// features or the kind of policy changed (then the state starts afresh, and the
    /// `Revision` before says `reset`).
    Spec {
        seq: u64,
        ts: i64,
        spec: Box<crate::spec::DeploymentSpec>,
    },
    /// A model variant's answer to a decision's inputs: the chosen variant's (returned to the
    /// caller) or a shadow's (logged only).
    Output {
        seq: u64,
        ts: i64,
        id: Uuid,
        v: usize,
        shadow: bool,
        pred: serde_json::Value,
    },
}

impl Event {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Event::Revision { seq, .. }
            | Event::Decision { seq, .. }
            | Event::Reward { seq, .. }
            | Event::Metrics { seq, .. }
            | Event::Pause { seq, .. }
            | Event::CanaryStep { seq, .. }
            | Event::Spec { seq, .. }
            | Event::Output { seq, .. } => *seq,
        }
    }

    /// When the event was logged (milliseconds since the epoch).
    pub(crate) fn ts(&self) -> i64 {
        match self {
            Event::Revision { ts, .. }
            | Event::Decision { ts, .. }
            | Event::Reward { ts, .. }
            | Event::Metrics { ts, .. }
            | Event::Pause { ts, .. }
            | Event::CanaryStep { ts, .. }
            | Event::Spec { ts, .. }
            | Event::Output { ts, .. } => *ts,
        }
    }

    /// The record's type, as its JSON tag `t` names it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::Revision { .. } => "revision",
            Event::Decision { .. } => "decision",
            Event::Reward { .. } => "reward",
            Event::Metrics { .. } => "metrics",
            Event::Pause { .. } => "pause",
            Event::CanaryStep { .. } => "canary_step",
            Event::Spec { .. } => "spec",
            Event::Output { .. } => "output",
        }
    }

    /// The decision the event is about, if any.
    pub(crate) fn decision_id(&self) -> Option<Uuid> {
        match self {
            Event::Decision { id, .. }
            | Event::Reward { id, .. }
            | Event::Metrics { id, .. }
            | Event::Output { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// Gives the event its place in the log.
    pub(crate) fn set_seq(&mut self, to: u64) {
        match self {
            Event::Revision { seq, .. }
            | Event::Decision { seq, .. }
            | Event::Reward { seq, .. }
            | Event::Metrics { seq, .. }
            | Event::Pause { seq, .. }
            | Event::CanaryStep { seq, .. }
            | Event::Spec { seq, .. }
            | Event::Output { seq, .. } => *seq = to,
        }
    }
}
