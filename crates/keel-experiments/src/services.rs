//! What every running deployment uses outside itself: the store (change log), the prediction
//! log, the inference service, the webhook client, the reference source of drift monitors,
//! and the task tracker that owns every background task.

use std::sync::{Arc, OnceLock};

use keel_predlog::{DecisionRecord, Entry, FeedbackRecord, PredictionLog};
use keel_serving::InferenceService;
use keel_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::drift::ReferenceSource;
use crate::notice::Notice;
use crate::outcome::DecisionOut;

/// The services shared by all running deployments of one `Deployments`.
pub(crate) struct Services {
    pub(crate) store: Store,
    /// Runs model variants; `None` in processes that serve no models.
    pub(crate) inference: Option<Arc<InferenceService>>,
    /// Decisions and rewards also go to the lake (tables `decisions`, `feedback`) when set.
    pub(crate) log: OnceLock<Arc<PredictionLog>>,
    /// Sends alert notifications.
    pub(crate) http: reqwest::Client,
    /// Loads drift monitors' reference tables (set by a server that has a lake).
    pub(crate) references: OnceLock<Arc<dyn ReferenceSource>>,
    /// Every background task (upkeep loop, shadows, drift work, webhooks): drained at shutdown.
    pub(crate) tasks: TaskTracker,
    /// Cancelled at shutdown: loops stop, one-shot tasks run to their end.
    pub(crate) cancel: CancellationToken,
    /// Set while an archiving pass runs (one at a time).
    pub(crate) archiving: std::sync::atomic::AtomicBool,
}

impl Services {
    pub(crate) fn new(store: Store, inference: Option<Arc<InferenceService>>) -> Services {
        Services {
            store,
            inference,
            log: OnceLock::new(),
            http: reqwest::Client::new(),
            references: OnceLock::new(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            archiving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Records what guardrails and canaries did in the change log, attributed to keel.
    pub(crate) async fn record_notices(&self, deployment: &str, notices: Vec<Notice>) {
        for notice in notices {
            let (kind, details) = (notice.kind(), notice.details());
            let subject = format!("deployment/{deployment}/guardrail");
            if let Err(e) = self
                .store
                .record_change("keel-guardrail", kind, &subject, &details)
                .await
            {
                tracing::error!(deployment, error = %e, "could not record a guardrail change");
            }
            tracing::warn!(deployment, kind, %details, "guardrail acted");
        }
    }

    /// Sends a decision to the prediction log, when there is one.
    pub(crate) fn log_decision(&self, deployment: &str, unit: Option<&str>, out: &DecisionOut) {
        if let Some(log) = self.log.get() {
            log.log(Entry::Decision(DecisionRecord {
                ts_us: keel_predlog::now_us(),
                decision_id: out.decision_id.clone(),
                deployment: deployment.to_string(),
                variant: out.variant.clone(),
                unit: unit.map(str::to_string),
                propensity: out.propensity,
                policy_version: out.policy_version as i64,
                revision: out.revision,
                control: out.control,
            }));
        }
    }

    /// Sends counted rewards, as (decision id, reward), to the prediction log.
    pub(crate) fn log_feedback(&self, deployment: &str, rewards: impl IntoIterator<Item = (String, f64)>) {
        if let Some(log) = self.log.get() {
            let ts_us = keel_predlog::now_us();
            for (decision_id, reward) in rewards {
                log.log(Entry::Feedback(FeedbackRecord {
                    ts_us,
                    decision_id,
                    deployment: deployment.to_string(),
                    reward,
                }));
            }
        }
    }
}
