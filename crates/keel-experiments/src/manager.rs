//! All running deployments: created and revised through the store (so every change is an
//! attributed revision), each with its own durable log under the experiments folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use keel_store::{DeploymentRevision, Store};

use crate::engine::{DecisionOut, Experiment, FeedbackOut, RewardIn, now_ms};
use crate::report::{Report, build};
use crate::spec::DeploymentSpec;
use crate::wal::Durability;
use crate::{ExperimentError, Result};

/// Names of deployments: they become folder names and URL segments.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ExperimentError::InvalidRequest(format!(
            "invalid deployment name '{}': use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit",
            name.escape_default()
        )))
    }
}

/// The set of running deployments.
pub struct Experiments {
    store: Store,
    dir: PathBuf,
    durability: Durability,
    running: RwLock<BTreeMap<String, Arc<Experiment>>>,
}

impl Experiments {
    /// Opens every deployment in the store, recovering each from its log.
    pub async fn open(store: Store, dir: PathBuf, durability: Durability) -> Result<Arc<Experiments>> {
        let me = Arc::new(Experiments {
            store,
            dir,
            durability,
            running: RwLock::new(BTreeMap::new()),
        });
        for revision in me.store.list_deployments().await? {
            me.start(&revision).await?;
        }
        Ok(me)
    }

    async fn start(&self, revision: &DeploymentRevision) -> Result<Arc<Experiment>> {
        let spec = DeploymentSpec::from_json(&revision.spec)?;
        let (name, rev, dir, durability) = (
            revision.name.clone(),
            revision.revision,
            self.dir.clone(),
            self.durability,
        );
        let previous = self.get(&name).ok();
        if let Some(p) = &previous {
            p.close();
        }
        let experiment = tokio::task::spawn_blocking(move || Experiment::open(&name, spec, rev, &dir, durability))
            .await
            .map_err(|e| ExperimentError::Log(format!("opening the deployment failed: {e}")))??;
        let experiment = Arc::new(experiment);
        self.running
            .write()
            .map_err(|_| ExperimentError::Log("lock poisoned".into()))?
            .insert(revision.name.clone(), experiment.clone());
        Ok(experiment)
    }

    /// Creates or revises a deployment: validated first; nothing is written if it is invalid.
    pub async fn apply(
        &self,
        name: &str,
        spec: &serde_json::Value,
        by: &str,
        reason: Option<&str>,
    ) -> Result<DeploymentRevision> {
        validate_name(name)?;
        DeploymentSpec::from_json(spec)?;
        let revision = self.store.put_deployment(name, spec, by, reason).await?;
        self.start(&revision).await?;
        Ok(revision)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Experiment>> {
        self.running
            .read()
            .map_err(|_| ExperimentError::Log("lock poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| ExperimentError::UnknownDeployment(name.escape_default().to_string()))
    }

    pub fn names(&self) -> Vec<String> {
        self.running
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn decide(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<DecisionOut> {
        let experiment = self.get(name)?;
        let (out, notices) = experiment.decide(unit, context).await?;
        self.record(name, notices).await;
        Ok(out)
    }

    pub async fn feedback(&self, name: &str, items: &[RewardIn]) -> Result<Vec<Result<FeedbackOut>>> {
        let experiment = self.get(name)?;
        let (results, notices) = experiment.feedback(items).await?;
        self.record(name, notices).await;
        Ok(results)
    }

    pub fn report(&self, name: &str) -> Result<Report> {
        let experiment = self.get(name)?;
        let waiting = experiment.waiting()?;
        experiment.with_inner(|inner| build(name, inner, waiting))
    }

    /// Closes attribution windows that ended; run every second by the server.
    pub async fn close_windows(&self) -> Result<usize> {
        let mut closed = 0;
        for name in self.names() {
            if let Ok(e) = self.get(&name) {
                closed += e.close_windows(now_ms()).await?;
            }
        }
        Ok(closed)
    }

    /// Guardrail pauses and canary moves go to the change log, attributed to keel.
    async fn record(&self, name: &str, notices: Vec<(String, serde_json::Value)>) {
        for (kind, details) in notices {
            let kind: &'static str = match kind.as_str() {
                "canary.rollback" => "canary.rollback",
                "canary.step" => "canary.step",
                _ => "experiment.pause",
            };
            let subject = format!("deployment/{name}/guardrail");
            if let Err(e) = self
                .store
                .record_change("keel-guardrail", kind, &subject, &details)
                .await
            {
                tracing::error!(deployment = name, error = %e, "could not record a guardrail change");
            }
            tracing::warn!(deployment = name, kind, %details, "guardrail acted");
        }
    }

    /// Flushes and stops every log writer.
    pub fn close(&self) {
        if let Ok(map) = self.running.read() {
            for e in map.values() {
                e.close();
            }
        }
    }
}
