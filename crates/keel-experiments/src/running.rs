//! One running revision of a deployment, as one value: its engine (policy state and durable
//! log), its model variants, its safeguards and its drift monitor. A new revision replaces the
//! whole value at once, so no reader ever sees parts of two revisions.

use std::sync::Arc;

use crate::drift::DriftMonitor;
use crate::engine::Deployment;
use crate::safeguards::Safeguards;
use crate::spec::DeploymentSpec;
use crate::variants::Variants;

/// A running revision: everything deciding needs, swapped as a whole.
pub(crate) struct RunningDeployment {
    /// The deployment's name.
    pub(crate) name: String,
    /// The spec of the running revision.
    pub(crate) spec: DeploymentSpec,
    /// Policy state, waiting decisions, counters and the durable log.
    pub(crate) engine: Arc<Deployment>,
    /// Model variants: chosen, fallback and shadow inference.
    pub(crate) variants: Variants,
    /// SLO, output guards and alert rules.
    pub(crate) safeguards: Safeguards,
    /// The live drift monitor, when the spec has one.
    pub(crate) drift: Option<Arc<DriftMonitor>>,
}

impl RunningDeployment {
    /// Assembles a running revision from its opened engine and resolved variants.
    pub(crate) fn new(spec: DeploymentSpec, engine: Arc<Deployment>, variants: Variants) -> RunningDeployment {
        RunningDeployment {
            name: engine.name.clone(),
            safeguards: Safeguards::new(&spec),
            drift: spec.monitor.clone().map(|m| Arc::new(DriftMonitor::new(m, spec.seed))),
            spec,
            engine,
            variants,
        }
    }

    /// The output the output guards and the drift monitor read (default: the first
    /// floating-point output).
    pub(crate) fn scored_output(&self) -> Option<&str> {
        self.spec.output_guardrails.as_ref().and_then(|g| g.output.as_deref())
    }
}
