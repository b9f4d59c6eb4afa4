//! All running deployments: created and revised through the store (so every change is an
//! attributed revision), each with its own durable log under the experiments folder. Each
//! running revision is one [`RunningDeployment`] value, swapped as a whole.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keel_predlog::PredictionLog;
use keel_serving::InferenceService;
use keel_serving::metrics::Protocol;
use keel_store::{DeploymentRevision, Store};
use tracing::Instrument as _;

use crate::decide::DecideRequest;
use crate::drift::ReferenceSource;
use crate::engine::{Deployment, now_ms};
use crate::outcome::{DecisionOut, FeedbackIn, FeedbackOut, RewardIn};
use crate::report::{Report, build};
use crate::running::RunningDeployment;
use crate::safeguards::Health;
use crate::services::Services;
use crate::spec::DeploymentSpec;
use crate::variants::Variants;
use crate::wal::LogOptions;
use crate::{DeploymentError, Result};

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
        Err(DeploymentError::InvalidRequest(format!(
            "invalid deployment name '{}': use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit",
            name.escape_default()
        )))
    }
}

fn poisoned() -> DeploymentError {
    DeploymentError::Log("lock poisoned".into())
}

/// The set of running deployments, and the owner of their background tasks.
pub struct Deployments {
    pub(crate) services: Services,
    dir: PathBuf,
    log: LogOptions,
    /// Per name: the running revision, replaced as a whole by a new one.
    running: RwLock<BTreeMap<String, Arc<RunningDeployment>>>,
    /// Per name: why a deployment could not start (a damaged log), and whether its log is held
    /// by another process; the others still serve.
    failed: RwLock<BTreeMap<String, (String, bool)>>,
}

/// A deployment that is not serving, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedDeployment {
    pub name: String,
    pub reason: String,
    /// Its decision log is open in another keel process (a server on the same home): a job on
    /// it belongs in that server.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held_elsewhere: bool,
}

impl Deployments {
    /// Opens every deployment in the store, recovering each from its log.
    pub async fn open(store: Store, dir: PathBuf, log: impl Into<LogOptions>) -> Result<Arc<Deployments>> {
        Deployments::open_with_models(store, dir, log, None).await
    }

    /// The folder the deployments' local state lives in (one subfolder each).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Opens every deployment; variants that are model versions run on `inference`.
    pub async fn open_with_models(
        store: Store,
        dir: PathBuf,
        log: impl Into<LogOptions>,
        inference: Option<Arc<InferenceService>>,
    ) -> Result<Arc<Deployments>> {
        let me = Arc::new(Deployments {
            services: Services::new(store, inference),
            dir,
            log: log.into(),
            running: RwLock::new(BTreeMap::new()),
            failed: RwLock::new(BTreeMap::new()),
        });
        for revision in me.services.store.list_deployments().await? {
            let spec = DeploymentSpec::from_json(&revision.spec)?;
            let variants = Variants::resolve(&spec, me.services.inference.as_deref()).await?;
            if let Err(e) = me.start(&revision, spec, variants).await {
                // One deployment whose log cannot be opened does not stop the others.
                tracing::error!(deployment = %revision.name, error = %e, "deployment not started");
            }
        }
        Ok(me)
    }

    /// Starts a revision: closes the previous one's log, opens (recovers) the engine, and puts
    /// the new running revision in place of the old one in one step.
    pub(crate) async fn start(
        &self,
        revision: &DeploymentRevision,
        spec: DeploymentSpec,
        variants: Variants,
    ) -> Result<()> {
        let (name, rev, dir, log) = (revision.name.clone(), revision.revision, self.dir.clone(), self.log);
        if let Ok(previous) = self.running(&name) {
            previous.engine.close();
        }
        let engine_spec = spec.clone();
        let opened = match self.services.store.postgres_pool() {
            // A PostgreSQL store: the log is there, shared by every replica.
            Some(pool) => Deployment::open_pg(&name, engine_spec, rev, pool, &dir, log).await,
            None => tokio::task::spawn_blocking(move || Deployment::open(&name, engine_spec, rev, &dir, log))
                .await
                .map_err(|e| DeploymentError::Log(format!("opening the deployment failed: {e}")))
                .and_then(|r| r),
        };
        let engine = match opened {
            Ok(engine) => engine,
            Err(e) => {
                self.running.write().map_err(|_| poisoned())?.remove(&revision.name);
                self.failed.write().map_err(|_| poisoned())?.insert(
                    revision.name.clone(),
                    (e.to_string(), matches!(e, DeploymentError::LogHeld { .. })),
                );
                return Err(e);
            }
        };
        let running = Arc::new(RunningDeployment::new(spec, Arc::new(engine), variants));
        self.failed.write().map_err(|_| poisoned())?.remove(&revision.name);
        self.running
            .write()
            .map_err(|_| poisoned())?
            .insert(revision.name.clone(), running);
        Ok(())
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
        let parsed = DeploymentSpec::from_json(spec)?;
        // Model references must resolve and load before anything is recorded.
        let variants = Variants::resolve(&parsed, self.services.inference.as_deref()).await?;
        let revision = record(&self.services.store, name, spec, &variants.served(), by, reason).await?;
        self.start(&revision, parsed, variants).await?;
        Ok(revision)
    }

    /// The running revision of `name`; a deployment that failed to start answers why.
    pub(crate) fn running(&self, name: &str) -> Result<Arc<RunningDeployment>> {
        if let Some(running) = self.running.read().map_err(|_| poisoned())?.get(name) {
            return Ok(running.clone());
        }
        if let Some((reason, _)) = self.failed.read().map_err(|_| poisoned())?.get(name) {
            return Err(DeploymentError::NotServing {
                name: name.to_string(),
                reason: reason.clone(),
            });
        }
        Err(DeploymentError::UnknownDeployment(name.escape_default().to_string()))
    }

    /// Deployments that are not serving: those that could not start (a damaged log) and those
    /// whose log writer failed since.
    pub fn failed(&self) -> Vec<FailedDeployment> {
        let mut out: Vec<FailedDeployment> = self
            .failed
            .read()
            .map(|m| {
                m.iter()
                    .map(|(name, (reason, held_elsewhere))| FailedDeployment {
                        name: name.clone(),
                        reason: reason.clone(),
                        held_elsewhere: *held_elsewhere,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for running in self.all_running() {
            if let Some(reason) = running.engine.failure() {
                out.push(FailedDeployment {
                    name: running.name.clone(),
                    reason,
                    held_elsewhere: false,
                });
            }
        }
        out
    }

    /// Every running revision, by name.
    pub(crate) fn all_running(&self) -> Vec<Arc<RunningDeployment>> {
        self.running
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The engine (policy state and log) of a running deployment.
    pub fn get(&self, name: &str) -> Result<Arc<Deployment>> {
        Ok(self.running(name)?.engine.clone())
    }

    /// Names of the running deployments.
    pub fn names(&self) -> Vec<String> {
        self.running
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The store deployments are revised through.
    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// Sends decisions and rewards to the prediction log from now on (set once, before serving).
    pub fn set_prediction_log(&self, log: Arc<PredictionLog>) {
        let _ = self.services.log.set(log);
    }

    /// Loads the reference tables of deployments' monitors from now on (set once, by a server
    /// that has a lake); until then monitors wait.
    pub fn set_reference_source(&self, source: Arc<dyn ReferenceSource>) {
        let _ = self.services.references.set(source);
    }

    /// Decides for a unit and context (deployments without model variants).
    pub async fn decide(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<DecisionOut> {
        self.decide_parts(name, unit, context, None, None, Protocol::Rest).await
    }

    /// Decides from REST parts, with optional model inputs (see
    /// [`decide_request`](Deployments::decide_request)).
    pub async fn decide_with_inputs(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        inputs: Option<keel_serving::InferRequest>,
    ) -> Result<DecisionOut> {
        self.decide_parts(name, unit, context, inputs, None, Protocol::Rest)
            .await
    }

    /// Decides; for model variants, runs the chosen variant on the request's inputs and
    /// returns its prediction, and sends a copy to every shadow variant (logged, never
    /// returned). A model answer an output guard holds back is replaced by the fallback
    /// variant's. Every call counts toward the deployment's SLO (server-side failures and slow
    /// answers are bad).
    pub async fn decide_request(&self, name: &str, req: DecideRequest) -> Result<DecisionOut> {
        let DecideRequest {
            unit,
            context,
            inputs,
            eligible,
            protocol,
        } = req;
        self.decide_parts(
            name,
            unit.as_deref(),
            context.as_ref(),
            inputs,
            eligible.as_deref(),
            protocol,
        )
        .await
    }

    async fn decide_parts(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        inputs: Option<keel_serving::InferRequest>,
        eligible: Option<&[String]>,
        protocol: Protocol,
    ) -> Result<DecisionOut> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            target: keel_serving::TRACE_TARGET,
            "decide",
            deployment = name,
            variant = tracing::field::Empty,
            decision_id = tracing::field::Empty,
        );
        let running = self.running(name)?;
        let result = running
            .decide(&self.services, unit, context, inputs, eligible, protocol)
            .instrument(span.clone())
            .await;
        if let Ok(out) = &result {
            span.record("variant", out.variant.as_str());
            span.record("decision_id", out.decision_id.as_str());
        }
        let server_side = matches!(&result, Err(e) if e.kind().is_server_fault());
        running
            .safeguards
            .record(now_ms(), started.elapsed().as_secs_f64() * 1000.0, server_side);
        result
    }

    /// Decides for many units at once (batch jobs; see [`Deployment::decide_many`]): each
    /// decision is logged durably like an online one, tagged with the run, and sent to the
    /// prediction log. Deployments whose variants are models need inputs per row, which this
    /// path does not take: they are refused as a whole before anything is decided.
    pub async fn decide_many(
        &self,
        name: &str,
        rows: &[crate::batch::UnitContext<'_>],
        run: Option<&str>,
    ) -> Result<Vec<Result<DecisionOut>>> {
        self.decide_many_now(name, rows, run)?.durable(self).await
    }

    /// The first half of [`Deployments::decide_many`], for a batch job that keeps its chunks in
    /// order while one chunk's log write overlaps the next chunk's decisions: decides `rows`
    /// now (CPU work under the deployment's lock: call it off the async workers) and returns
    /// them unacknowledged; [`DecidedBatch::durable`] waits for the log and acknowledges them.
    pub fn decide_many_now(
        &self,
        name: &str,
        rows: &[crate::batch::UnitContext<'_>],
        run: Option<&str>,
    ) -> Result<DecidedBatch> {
        let running = self.running(name)?;
        if running.variants.has_models() {
            return Err(DeploymentError::InvalidRequest(format!(
                "deployment '{name}' has model variants, which need model inputs per decision; \
                 batch decide serves deployments whose variants are actions (decide it online, or score the table with `keel batch score`)"
            )));
        }
        let started = std::time::Instant::now();
        let decided = running.engine.decide_many_now(rows, run);
        if let Err(e) = &decided {
            running.safeguards.record(
                now_ms(),
                started.elapsed().as_secs_f64() * 1000.0,
                e.kind().is_server_fault(),
            );
        }
        let (results, notices, last) = decided?;
        Ok(DecidedBatch {
            name: name.to_owned(),
            running,
            units: rows.iter().map(|r| r.unit.to_owned()).collect(),
            results,
            notices,
            last,
            started,
        })
    }

    /// SLO status, guardrail trips and alert states of a running deployment.
    pub fn health(&self, name: &str) -> Result<Health> {
        let running = self.running(name)?;
        running.engine.serving()?;
        let revision = running.engine.with_inner(|i| i.revision)?;
        Ok(running
            .safeguards
            .health(name, revision, running.drift.as_deref(), now_ms()))
    }

    /// Records rewards; each answers on its own.
    pub async fn feedback(&self, name: &str, items: &[RewardIn]) -> Result<Vec<Result<FeedbackOut>>> {
        let items: Vec<FeedbackIn> = items.iter().map(FeedbackIn::from).collect();
        self.feedback_items(name, &items).await
    }

    /// Records feedback: rewards, other declared metrics, or both; each item answers on its
    /// own. Rewards counted go to the prediction log's feedback (metrics do not).
    pub async fn feedback_items(&self, name: &str, items: &[FeedbackIn]) -> Result<Vec<Result<FeedbackOut>>> {
        let engine = self.get(name)?;
        let reward_name = engine.with_inner(|i| i.spec.reward_name().to_string())?;
        let (results, notices) = engine.feedback_items(items).await?;
        self.services.record_notices(name, notices).await;
        let counted = results
            .iter()
            .zip(items)
            .filter(|(r, _)| matches!(r, Ok(out) if out.counted))
            .filter_map(|(_, item)| {
                let reward = item.reward.or_else(|| item.metrics.get(&reward_name).copied())?;
                Some((item.decision_id.clone(), reward))
            });
        self.services.log_feedback(name, counted);
        Ok(results)
    }

    /// The report of a running deployment.
    pub fn report(&self, name: &str) -> Result<Report> {
        let engine = self.get(name)?;
        // Refused once its log writer failed (`waiting` checks).
        let waiting = engine.waiting()?;
        engine.with_inner(|inner| build(name, inner, waiting))
    }

    /// Flushes and stops every log writer.
    pub fn close(&self) {
        for running in self.all_running() {
            running.engine.close();
        }
    }

    /// Stops the upkeep loop, waits (at most `timeout`) for every background task (shadow
    /// inference, drift work, alert webhooks) to finish, then flushes and stops every log
    /// writer. Returns whether every task finished in time. Called by the server on shutdown.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let tasks = &self.services.tasks;
        self.services.cancel.cancel();
        tasks.close();
        let pending = tasks.len();
        let drained = tokio::time::timeout(timeout, tasks.wait()).await.is_ok();
        if drained {
            tracing::info!(tasks = pending, "deployments' background tasks drained");
        } else {
            tracing::warn!(
                pending = tasks.len(),
                timeout_ms = timeout.as_millis() as u64,
                "deployments' background tasks did not finish in time; shutting down without them"
            );
        }
        self.snapshot_replicated(timeout).await;
        self.close();
        drained
    }

    /// A snapshot of every deployment whose log is in PostgreSQL, written there before the
    /// writers stop (at most `timeout` for all), so the next start of any replica replays only
    /// what was logged after it. A failure is logged: the periodic snapshots and the log remain.
    async fn snapshot_replicated(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for running in self.all_running() {
            if running.engine.wal.pg().is_none() {
                continue;
            }
            match tokio::time::timeout_at(deadline, running.engine.snapshot()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(deployment = %running.engine.name, error = %e, "no snapshot at shutdown; the next start replays more of the log")
                }
                Err(_) => {
                    tracing::warn!(deployment = %running.engine.name, "snapshot at shutdown did not finish in time; the next start replays more of the log");
                    return;
                }
            }
        }
    }
}

/// Records the lineage of a deployment revision: each served model version feeds the
/// deployment, and the deployment writes its decision log. Best effort: the revision is already
/// recorded, so a failure here is logged rather than undoing it.
pub async fn record_lineage(store: &Store, deployment: &str, models: &[(String, i64)], by: &str) {
    let target = format!("deployment/{deployment}");
    let mut edges: Vec<(String, String, &str)> = models
        .iter()
        .map(|(m, v)| (format!("model/{m}/{v}"), target.clone(), "serves"))
        .collect();
    edges.push((target.clone(), format!("decisions/{deployment}"), "logs"));
    for (source, target, relation) in edges {
        if let Err(e) = store.add_lineage(&source, &target, relation, by).await {
            tracing::warn!(%source, %target, error = %e, "cannot record lineage");
        }
    }
}

/// A revision checked and ready to be recorded without a running server (`keel deployment
/// apply`): the same checks as [`Deployments::apply`] up to the switch, except that model
/// variants are resolved in the registry, not loaded. Between [`prepare_revision`] and
/// [`PreparedRevision::record`] the caller runs its own access checks on [`Self::spec`] (the
/// monitor's reference table).
#[derive(Debug)]
pub struct PreparedRevision {
    name: String,
    raw: serde_json::Value,
    pub spec: DeploymentSpec,
    served: Vec<(String, i64)>,
}

/// Validates the name and the spec, and resolves every model variant's reference.
pub async fn prepare_revision(
    registry: &keel_registry::Registry,
    name: &str,
    spec: serde_json::Value,
) -> Result<PreparedRevision> {
    validate_name(name)?;
    let parsed = DeploymentSpec::from_json(&spec)?;
    let mut served = Vec::new();
    for v in &parsed.variants {
        if let Some(reference) = &v.model {
            let resolved = async {
                let (model, selector) = keel_registry::VersionSelector::split_reference(reference)?;
                registry.resolve(&model, &selector).await
            };
            let version = resolved.await.map_err(|source| DeploymentError::ModelReference {
                variant: v.name.clone(),
                reference: reference.clone(),
                source,
            })?;
            served.push((version.model, version.version));
        }
    }
    Ok(PreparedRevision {
        name: name.to_string(),
        raw: spec,
        spec: parsed,
        served,
    })
}

impl PreparedRevision {
    /// Records the revision and its lineage (model -> deployment -> decisions) as `by`.
    pub async fn record(self, store: &Store, by: &str, reason: Option<&str>) -> Result<DeploymentRevision> {
        record(store, &self.name, &self.raw, &self.served, by, reason).await
    }
}

/// The recording step both applies share: the revision, then its lineage.
async fn record(
    store: &Store,
    name: &str,
    spec: &serde_json::Value,
    served: &[(String, i64)],
    by: &str,
    reason: Option<&str>,
) -> Result<DeploymentRevision> {
    let spec = &DeploymentSpec::recorded_form(spec);
    let revision = store.put_deployment(name, spec, by, reason).await?;
    record_lineage(store, name, served, by).await;
    Ok(revision)
}

/// Decisions made by [`Deployments::decide_many_now`] and handed to the log, not yet durable:
/// nothing of them is acknowledged until [`DecidedBatch::durable`] returns.
#[must_use = "the decisions are acknowledged only once `durable` returns"]
pub struct DecidedBatch {
    name: String,
    running: Arc<RunningDeployment>,
    units: Vec<String>,
    results: Vec<Result<DecisionOut>>,
    notices: Vec<crate::notice::Notice>,
    last: u64,
    started: std::time::Instant,
}

impl DecidedBatch {
    /// Waits until every decision is durable in the log, then records the batch's notices and
    /// sends the decisions to the prediction log; the results, one per row, in row order.
    pub async fn durable(self, deployments: &Deployments) -> Result<Vec<Result<DecisionOut>>> {
        Ok(self.durable_with_units(deployments).await?.1)
    }

    /// [`DecidedBatch::durable`], with the units decided for (in row order) beside the results.
    pub async fn durable_with_units(
        self,
        deployments: &Deployments,
    ) -> Result<(Vec<String>, Vec<Result<DecisionOut>>)> {
        let waited = self.running.engine.wait_logged(self.last).await;
        let server_side = matches!(&waited, Err(e) if e.kind().is_server_fault());
        self.running
            .safeguards
            .record(now_ms(), self.started.elapsed().as_secs_f64() * 1000.0, server_side);
        waited?;
        deployments.services.record_notices(&self.name, self.notices).await;
        for (unit, out) in self.units.iter().zip(&self.results) {
            if let Ok(out) = out {
                deployments.services.log_decision(&self.name, Some(unit), out);
            }
        }
        Ok((self.units, self.results))
    }
}
