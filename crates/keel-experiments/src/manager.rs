//! All running deployments: created and revised through the store (so every change is an
//! attributed revision), each with its own durable log under the experiments folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use keel_predlog::{DecisionRecord, Entry, FeedbackRecord, PredictionLog, Routing};

use keel_registry::VersionSelector;
use keel_serving::metrics::Protocol;
use keel_serving::{InferRequest, InferenceService, LoadedModel};
use keel_store::{DeploymentRevision, Store};

use crate::drift::ReferenceSource;
use crate::engine::{DecisionOut, Deployment, FeedbackOut, RewardIn, now_ms};
use crate::report::{Report, build};
use crate::safeguards::{Health, Safeguards};
use crate::score::Scores;
use crate::spec::DeploymentSpec;
use crate::wal::Durability;
use crate::{DeploymentError, Result};
use keel_guard::AlertEvent;
use tracing::Instrument as _;

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

/// The models of a deployment's variants, resolved and loaded when it starts.
#[derive(Default, Clone)]
struct VariantModels {
    /// Per variant: the loaded model version, for model variants.
    models: Vec<Option<Arc<LoadedModel>>>,
    shadows: Vec<usize>,
}

/// The set of running deployments.
pub struct Deployments {
    store: Store,
    dir: PathBuf,
    durability: Durability,
    inference: Option<Arc<InferenceService>>,
    running: RwLock<BTreeMap<String, Arc<Deployment>>>,
    models: RwLock<BTreeMap<String, VariantModels>>,
    /// Decisions and rewards also go to the lake (tables `decisions`, `feedback`) when set.
    log: OnceLock<Arc<PredictionLog>>,
    /// Per running deployment: its SLO, output guardrails and alert rules.
    watches: RwLock<BTreeMap<String, Arc<Safeguards>>>,
    /// Sends alert notifications.
    http: reqwest::Client,
    /// Loads monitors' reference tables (set by a server that has a lake).
    references: OnceLock<Arc<dyn ReferenceSource>>,
}

impl Deployments {
    /// Opens every deployment in the store, recovering each from its log.
    pub async fn open(store: Store, dir: PathBuf, durability: Durability) -> Result<Arc<Deployments>> {
        Deployments::open_with_models(store, dir, durability, None).await
    }

    /// Opens every deployment; variants that are model versions run on `inference`.
    pub async fn open_with_models(
        store: Store,
        dir: PathBuf,
        durability: Durability,
        inference: Option<Arc<InferenceService>>,
    ) -> Result<Arc<Deployments>> {
        let me = Arc::new(Deployments {
            store,
            dir,
            durability,
            inference,
            running: RwLock::new(BTreeMap::new()),
            models: RwLock::new(BTreeMap::new()),
            log: OnceLock::new(),
            watches: RwLock::new(BTreeMap::new()),
            http: reqwest::Client::new(),
            references: OnceLock::new(),
        });
        for revision in me.store.list_deployments().await? {
            me.start(&revision).await?;
        }
        Ok(me)
    }

    async fn start(&self, revision: &DeploymentRevision) -> Result<Arc<Deployment>> {
        let spec = DeploymentSpec::from_json(&revision.spec)?;
        let models = self.resolve_models(&spec).await?;
        self.start_resolved(revision, spec, models).await
    }

    async fn start_resolved(
        &self,
        revision: &DeploymentRevision,
        spec: DeploymentSpec,
        models: VariantModels,
    ) -> Result<Arc<Deployment>> {
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
        self.watches
            .write()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .insert(name.clone(), Arc::new(Safeguards::new(&spec)));
        let experiment = tokio::task::spawn_blocking(move || Deployment::open(&name, spec, rev, &dir, durability))
            .await
            .map_err(|e| DeploymentError::Log(format!("opening the deployment failed: {e}")))??;
        let experiment = Arc::new(experiment);
        self.running
            .write()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .insert(revision.name.clone(), experiment.clone());
        self.models
            .write()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .insert(revision.name.clone(), models);
        Ok(experiment)
    }

    /// Loads the model version behind every model variant (`name@alias`, `name:3`, `name`).
    async fn resolve_models(&self, spec: &DeploymentSpec) -> Result<VariantModels> {
        let mut out = VariantModels::default();
        for (i, v) in spec.variants.iter().enumerate() {
            let Some(reference) = &v.model else {
                out.models.push(None);
                continue;
            };
            let Some(inference) = &self.inference else {
                return Err(DeploymentError::InvalidSpec(vec![format!(
                    "variant '{}' is a model, but this process serves no models",
                    v.name
                )]));
            };
            let (name, selector) = VersionSelector::split_reference(reference)
                .map_err(|e| DeploymentError::InvalidSpec(vec![format!("variant '{}': {e}", v.name)]))?;
            let loaded = inference.repository().load_pinned(&name, &selector).await?;
            if v.shadow {
                out.shadows.push(i);
            }
            out.models.push(Some(loaded));
        }
        Ok(out)
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
        let models = self.resolve_models(&parsed).await?;
        let revision = self.store.put_deployment(name, spec, by, reason).await?;
        let served: Vec<(String, i64)> = models
            .models
            .iter()
            .flatten()
            .map(|m| (m.name.clone(), m.version))
            .collect();
        record_lineage(&self.store, name, &served, by).await;
        self.start_resolved(&revision, parsed, models).await?;
        Ok(revision)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Deployment>> {
        self.running
            .read()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| DeploymentError::UnknownDeployment(name.escape_default().to_string()))
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

    /// Sends decisions and rewards to the prediction log from now on (set once, before serving).
    pub fn set_prediction_log(&self, log: Arc<PredictionLog>) {
        let _ = self.log.set(log);
    }

    /// Loads the reference tables of deployments' monitors from now on (set once, by a server
    /// that has a lake); until then monitors wait.
    pub fn set_reference_source(&self, source: Arc<dyn ReferenceSource>) {
        let _ = self.references.set(source);
    }

    pub async fn decide(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<DecisionOut> {
        self.decide_with_inputs(name, unit, context, None).await
    }

    /// Decides; for model variants, runs the chosen variant on `inputs` and returns its
    /// prediction, and sends a copy to every shadow variant (logged, never returned). A model
    /// answer an output guardrail holds back is replaced by the fallback variant's. Every call
    /// counts toward the deployment's SLO (server-side failures and slow answers are bad).
    pub async fn decide_with_inputs(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        inputs: Option<InferRequest>,
    ) -> Result<DecisionOut> {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            target: keel_serving::TRACE_TARGET,
            "decide",
            deployment = name,
            variant = tracing::field::Empty,
            decision_id = tracing::field::Empty,
        );
        let result = self
            .decide_once(name, unit, context, inputs)
            .instrument(span.clone())
            .await;
        if let Ok(out) = &result {
            span.record("variant", out.variant.as_str());
            span.record("decision_id", out.decision_id.as_str());
        }
        if let Ok(watch) = self.watch(name) {
            let server_side = matches!(
                &result,
                Err(e) if matches!(
                    e.kind(),
                    keel_serving::ErrorKind::Internal | keel_serving::ErrorKind::Unavailable
                )
            );
            watch.record(now_ms(), started.elapsed().as_secs_f64() * 1000.0, server_side);
        }
        result
    }

    async fn decide_once(
        &self,
        name: &str,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
        inputs: Option<InferRequest>,
    ) -> Result<DecisionOut> {
        let experiment = self.get(name)?;
        let models = self
            .models
            .read()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .get(name)
            .cloned()
            .unwrap_or_default();
        let has_models = models.models.iter().any(Option::is_some);
        if has_models {
            let Some(request) = &inputs else {
                return Err(DeploymentError::InvalidRequest(
                    "this deployment's variants are models: send 'inputs' as in an Open Inference Protocol infer request"
                        .into(),
                ));
            };
            // Check the inputs against every serving model before deciding, so a bad request
            // leaves no decision behind.
            for m in models
                .models
                .iter()
                .enumerate()
                .filter(|(i, _)| !models.shadows.contains(i))
                .filter_map(|(_, m)| m.as_ref())
            {
                if let Err(e) = keel_serving::validate(m, request) {
                    if let Ok(watch) = self.watch(name)
                        && let Some(monitor) = &watch.monitor
                    {
                        monitor.schema_violation();
                    }
                    return Err(e.into());
                }
            }
        }
        let (mut out, notices) = experiment.decide(unit, context).await?;
        self.record(name, notices).await;
        if let Some(log) = self.log.get() {
            log.log(Entry::Decision(DecisionRecord {
                ts_us: keel_predlog::now_us(),
                decision_id: out.decision_id.clone(),
                deployment: name.to_string(),
                variant: out.variant.clone(),
                unit: unit.map(str::to_string),
                propensity: out.propensity,
                policy_version: out.policy_version as i64,
                revision: out.revision,
                control: out.control,
            }));
        }
        if let (Some(request), Some(inference)) = (inputs, &self.inference) {
            let chosen = experiment.variant_index(&out.variant)?;
            if let Some(model) = chosen.and_then(|i| models.models.get(i).cloned().flatten()) {
                let routing = Routing {
                    deployment: name.to_string(),
                    variant: out.variant.clone(),
                    decision_id: out.decision_id.clone(),
                    shadow: false,
                };
                let response = inference
                    .infer_on(Protocol::Rest, model, request.clone(), Some(routing))
                    .await?;
                let pred = outputs_json(&response);
                if let Some(v) = chosen {
                    experiment.log_output(&out.decision_id, v, false, pred.clone())?;
                }
                let watch = self.watch(name)?;
                let output = watch.guard_spec().and_then(|g| g.output.as_deref());
                let mut scores = response_scores(&response, output);
                out.prediction = Some(pred);
                out.prediction_id = response.prediction_id;
                if let Some(v) = chosen {
                    scores = self
                        .guard_output(name, &watch, &experiment, &models, v, &request, &mut out, scores)
                        .await?;
                }
                if let Some(monitor) = &watch.monitor {
                    let rows = scores.map(|s| s.rows).unwrap_or_default();
                    monitor.observe(now_ms(), &request, &out.variant, &rows, out.prediction_id.as_deref());
                }
            }
            for &s in &models.shadows {
                let Some(model) = models.models.get(s).cloned().flatten() else {
                    continue;
                };
                let (inference, experiment, request, id) = (
                    inference.clone(),
                    experiment.clone(),
                    request.clone(),
                    out.decision_id.clone(),
                );
                let routing = Routing {
                    deployment: name.to_string(),
                    variant: experiment.with_inner(|i| i.spec.variants[s].name.clone())?,
                    decision_id: id.clone(),
                    shadow: true,
                };
                tokio::spawn(async move {
                    match inference.infer_on(Protocol::Rest, model, request, Some(routing)).await {
                        Ok(response) => {
                            if let Err(e) = experiment.log_output(&id, s, true, outputs_json(&response)) {
                                tracing::warn!(error = %e, "shadow answer not logged");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "shadow variant failed; the caller is unaffected"),
                    }
                });
            }
        }
        Ok(out)
    }

    /// Checks the chosen variant's answer (its `scores`) against the output guardrails; when
    /// it is held back, the fallback variant answers instead (its model runs on the same
    /// inputs, or it answers as a plain action) and the decision says so. Returns the scores of
    /// the answer that goes out.
    #[allow(clippy::too_many_arguments)]
    async fn guard_output(
        &self,
        name: &str,
        watch: &Safeguards,
        experiment: &Arc<Deployment>,
        models: &VariantModels,
        chosen: usize,
        request: &InferRequest,
        out: &mut DecisionOut,
        scores: Option<Scores>,
    ) -> Result<Option<Scores>> {
        let Some(spec) = watch.guard_spec().cloned() else {
            return Ok(scores);
        };
        let fallback = experiment.variant_index(&spec.fallback)?;
        if fallback == Some(chosen) || out.prediction.is_none() {
            return Ok(scores);
        }
        let Scores { values, rows, .. } = scores.clone().unwrap_or_default();
        let Some(violation) = watch.check(name, chosen, &out.variant, &values, &rows) else {
            return Ok(scores);
        };
        tracing::warn!(
            deployment = name, variant = %out.variant, fallback = %spec.fallback, ?violation,
            "output guardrail held an answer back"
        );
        let held_back = out.variant.clone();
        out.variant = spec.fallback.clone();
        out.prediction = None;
        out.prediction_id = None;
        out.fallback = Some(serde_json::json!({ "from": held_back, "violation": violation }));
        if let (Some(f), Some(inference)) = (fallback, &self.inference)
            && let Some(model) = models.models.get(f).cloned().flatten()
        {
            let routing = Routing {
                deployment: name.to_string(),
                variant: spec.fallback.clone(),
                decision_id: out.decision_id.clone(),
                shadow: false,
            };
            let response = inference
                .infer_on(Protocol::Rest, model, request.clone(), Some(routing))
                .await?;
            let pred = outputs_json(&response);
            experiment.log_output(&out.decision_id, f, false, pred.clone())?;
            out.prediction = Some(pred);
            out.prediction_id = response.prediction_id.clone();
            return Ok(response_scores(&response, spec.output.as_deref()));
        }
        Ok(None)
    }

    /// Pairs labels with the scores live monitors remember, for their AUC; returns how many
    /// labels matched a monitored prediction.
    pub fn observe_labels(&self, labels: &[keel_predlog::LabelRecord]) -> usize {
        let watches: Vec<Arc<Safeguards>> = self
            .watches
            .read()
            .map(|w| w.values().filter(|w| w.monitor.is_some()).cloned().collect())
            .unwrap_or_default();
        if watches.is_empty() {
            return 0;
        }
        let now = now_ms();
        let mut matched = 0;
        for label in labels {
            if let Some(m) = watches
                .iter()
                .filter_map(|w| w.monitor.as_ref())
                .find(|m| m.knows(&label.prediction_id))
            {
                matched += m.observe_labels(std::slice::from_ref(label), now);
            }
        }
        metrics::counter!("keel_labels_total", "matched" => "live_monitor").increment(matched as u64);
        matched
    }

    /// Loads monitors' references when due and runs due drift evaluations, in the background.
    fn tick_monitors(&self, name: &str, watch: &Arc<Safeguards>) {
        let Some(monitor) = &watch.monitor else { return };
        let now = now_ms();
        if let Some(source) = self.references.get()
            && monitor.begin_load(now)
        {
            // The serving (not shadow) variants that are models, by name.
            let names: Vec<String> = self
                .get(name)
                .and_then(|e| e.with_inner(|i| i.spec.variants.iter().map(|v| v.name.clone()).collect()))
                .unwrap_or_default();
            let models: Vec<(String, Arc<LoadedModel>)> = self
                .models
                .read()
                .ok()
                .and_then(|m| {
                    let v = m.get(name)?;
                    Some(
                        v.models
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| !v.shadows.contains(i))
                            .filter_map(|(i, m)| Some((names.get(i)?.clone(), m.clone()?)))
                            .collect(),
                    )
                })
                .unwrap_or_default();
            let output = watch.guard_spec().and_then(|g| g.output.clone());
            let (source, watch, name) = (source.clone(), watch.clone(), name.to_owned());
            tokio::spawn(async move {
                let Some(monitor) = &watch.monitor else { return };
                let spec = monitor.spec().clone();
                let loaded = if models.is_empty() {
                    Err("no serving variant of this deployment is a loaded model".to_string())
                } else {
                    match source.load(&spec.reference).await {
                        Err(e) => Err(format!("cannot load reference table {}: {e}", spec.reference)),
                        Ok(batches) => {
                            let seed = now as u64;
                            tokio::task::spawn_blocking(move || {
                                crate::drift::prepare_reference(&spec, &models, &batches, seed, output.as_deref())
                            })
                            .await
                            .unwrap_or_else(|e| Err(format!("loading the reference failed: {e}")))
                        }
                    }
                };
                monitor.finish_load(&name, loaded, now_ms());
            });
        }
        if let Some(evaluation) = monitor.prepare(now) {
            let (watch, name) = (watch.clone(), name.to_owned());
            tokio::spawn(async move {
                let report = tokio::task::spawn_blocking(move || evaluation.run().map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the drift task failed: {e}")));
                if let Some(monitor) = &watch.monitor {
                    monitor.finish_evaluation(&name, report);
                }
            });
        }
    }

    fn watch(&self, name: &str) -> Result<Arc<Safeguards>> {
        self.watches
            .read()
            .map_err(|_| DeploymentError::Log("lock poisoned".into()))?
            .get(name)
            .cloned()
            .ok_or_else(|| DeploymentError::UnknownDeployment(name.escape_default().to_string()))
    }

    /// SLO status, guardrail trips and alert states of a running deployment.
    pub fn health(&self, name: &str) -> Result<Health> {
        let experiment = self.get(name)?;
        let revision = experiment.with_inner(|i| i.revision)?;
        Ok(self.watch(name)?.health(name, revision, now_ms()))
    }

    /// Evaluates every deployment's alert rules: notifies webhooks (in the background), records
    /// firings and resolutions in the change log, and rolls a deployment back to its previous
    /// revision when a firing rule says so. Run every second by the server.
    pub async fn watch_tick(&self) -> Vec<AlertEvent> {
        let mut all = Vec::new();
        for name in self.names() {
            let Ok(watch) = self.watch(&name) else { continue };
            self.tick_monitors(&name, &watch);
            // The watch holds the rules: no need to take the deployment's decision lock.
            for (event, notify) in watch.evaluate(&name, now_ms()) {
                keel_guard::alert::notify_all(&self.http, &event, &notify);
                let kind = if event.status == "firing" {
                    "alert.firing"
                } else {
                    "alert.resolved"
                };
                let details = serde_json::to_value(&event).unwrap_or_default();
                if let Err(e) = self
                    .store
                    .record_change(
                        "keel-alert",
                        kind,
                        &format!("deployment/{name}/alert/{}", event.rule),
                        &details,
                    )
                    .await
                {
                    tracing::error!(deployment = %name, error = %e, "could not record an alert");
                }
                tracing::warn!(deployment = %name, rule = %event.rule, status = event.status, message = %event.message, "alert");
                if event.rollback
                    && let Err(e) = self.roll_back(&name, &event).await
                {
                    tracing::error!(deployment = %name, error = %e, "automatic rollback failed");
                }
                all.push(event);
            }
        }
        all
    }

    /// Re-applies the revision before the current one, attributed to the alert rule.
    async fn roll_back(&self, name: &str, event: &AlertEvent) -> Result<()> {
        let history = self.store.deployment_history(name).await?;
        let current = self.get(name)?.with_inner(|i| i.revision)?;
        let Some(previous) = history.iter().rev().find(|r| r.revision < current) else {
            tracing::warn!(
                deployment = name,
                "alert asked for a rollback, but there is no earlier revision"
            );
            return Ok(());
        };
        let by = format!("keel-alert/{}", event.rule);
        let reason = format!(
            "automatic rollback to revision {} by alert '{}': {}",
            previous.revision, event.rule, event.message
        );
        let revision = self.apply(name, &previous.spec, &by, Some(&reason)).await?;
        let details = serde_json::json!({
            "from_revision": current, "to_revision": previous.revision, "new_revision": revision.revision,
            "rule": event.rule, "message": event.message,
        });
        self.store
            .record_change(
                &by,
                "deployment.rollback",
                &format!("deployment/{name}/{}", revision.revision),
                &details,
            )
            .await?;
        Ok(())
    }

    pub async fn feedback(&self, name: &str, items: &[RewardIn]) -> Result<Vec<Result<FeedbackOut>>> {
        let experiment = self.get(name)?;
        let (results, notices) = experiment.feedback(items).await?;
        self.record(name, notices).await;
        if let Some(log) = self.log.get() {
            let ts_us = keel_predlog::now_us();
            for (r, item) in results.iter().zip(items) {
                if matches!(r, Ok(out) if out.counted) {
                    log.log(Entry::Feedback(FeedbackRecord {
                        ts_us,
                        decision_id: item.decision_id.clone(),
                        deployment: name.to_string(),
                        reward: item.reward,
                    }));
                }
            }
        }
        Ok(results)
    }

    pub fn report(&self, name: &str) -> Result<Report> {
        let experiment = self.get(name)?;
        let waiting = experiment.waiting()?;
        experiment.with_inner(|inner| build(name, inner, waiting))
    }

    /// Closes attribution windows that ended; run every second by the server.
    /// Closes every deployment's expired attribution windows: default rewards go to the
    /// feedback log like any other reward, and the guardrail moves they cause to the change log.
    pub async fn close_windows(&self) -> Result<usize> {
        let mut closed = 0;
        for name in self.names() {
            if let Ok(e) = self.get(&name) {
                let done = e.close_windows(now_ms()).await?;
                closed += done.closed;
                if let Some(log) = self.log.get() {
                    let ts_us = keel_predlog::now_us();
                    for (decision_id, reward) in done.defaults {
                        log.log(Entry::Feedback(FeedbackRecord {
                            ts_us,
                            decision_id,
                            deployment: name.clone(),
                            reward,
                        }));
                    }
                }
                self.record(&name, done.notices).await;
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

/// The scores of a response's `output` (or its first floating-point one), as guardrails and the
/// live monitor read them.
fn response_scores(response: &keel_serving::InferResponse, output: Option<&str>) -> Option<Scores> {
    crate::score::output_scores(response.outputs.iter().map(|o| (o.name.as_str(), &o.tensor)), output)
}

/// A response's outputs as `{name: data}` JSON.
fn outputs_json(response: &keel_serving::InferResponse) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for o in &response.outputs {
        let data = match &o.tensor.data {
            keel_serving::TensorData::Fp32(v) => serde_json::json!(v),
            keel_serving::TensorData::Fp64(v) => serde_json::json!(v),
            keel_serving::TensorData::Int64(v) => serde_json::json!(v),
            keel_serving::TensorData::Int32(v) => serde_json::json!(v),
            keel_serving::TensorData::Bool(v) => serde_json::json!(v),
            keel_serving::TensorData::Bytes(v) => {
                serde_json::json!(
                    v.iter()
                        .map(|b| String::from_utf8_lossy(b).to_string())
                        .collect::<Vec<_>>()
                )
            }
            other => serde_json::json!(format!("{} values of {}", other.len(), other.datatype())),
        };
        map.insert(
            o.name.clone(),
            serde_json::json!({"shape": o.tensor.shape, "data": data}),
        );
    }
    serde_json::Value::Object(map)
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
