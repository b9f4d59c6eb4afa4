//! The work deployments do on their own, every second: closing attribution windows, loading
//! drift references and running drift evaluations, evaluating alert rules (webhooks, change
//! log, automatic rollback). Everything runs on the task tracker of [`Deployments`], so
//! shutdown drains it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_guard::AlertEvent;

use crate::Result;
use crate::engine::now_ms;
use crate::manager::Deployments;
use crate::running::RunningDeployment;

/// Archiving passes run every this many upkeep ticks (seconds), and at start.
const ARCHIVE_EVERY_TICKS: u64 = 60;

impl Deployments {
    /// Starts the upkeep loop on this set's task tracker: every second it closes attribution
    /// windows and evaluates safeguards ([`close_windows`](Deployments::close_windows),
    /// [`watch_tick`](Deployments::watch_tick)); it stops at [`shutdown`](Deployments::shutdown).
    pub fn spawn_upkeep(self: &Arc<Self>) {
        let me = self.clone();
        let stop = self.services.cancel.clone();
        self.services.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut ticks: u64 = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        if ticks.is_multiple_of(ARCHIVE_EVERY_TICKS) {
                            me.archive_tick();
                        }
                        ticks += 1;
                        if let Err(e) = me.close_windows().await {
                            tracing::error!(error = %e, "closing attribution windows failed");
                        }
                        // SLOs, guardrail trips and alert rules (notifications, rollbacks).
                        me.watch_tick().await;
                        me.snapshot_tick();
                        me.reload_newer().await;
                    }
                }
            }
        });
    }

    /// Closes every deployment's expired attribution windows: default rewards go to the
    /// feedback log like any other reward, and the guardrail moves they cause to the change log.
    pub async fn close_windows(&self) -> Result<usize> {
        let mut closed = 0;
        for running in self.all_running() {
            if running.engine.failure().is_some() {
                // Its log writer failed: it serves nothing until opened again.
                continue;
            }
            let done = running.engine.close_windows(now_ms()).await?;
            closed += done.closed;
            self.services.log_feedback(&running.name, done.defaults);
            self.services.record_notices(&running.name, done.notices).await;
        }
        Ok(closed)
    }

    /// Starts an archiving pass ([`Deployments::archive_now`]) on the task tracker, unless one
    /// is running or no lake is registered for this folder.
    fn archive_tick(self: &Arc<Self>) {
        let registered = crate::archive::registered(self.dir()).is_some();
        if !registered || self.services.archiving.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        self.services.tasks.spawn(async move {
            if let Err(e) = me.archive_now().await {
                tracing::error!(error = %e, "archiving closed log segments to the lake failed; they stay on local disk");
            }
            me.services.archiving.store(false, Ordering::Release);
        });
    }

    /// Archives every deployment's closed log segments that are due (see [`crate::archive`])
    /// to the lake registered for this folder; what was archived, summed. A deployment whose
    /// pass fails is logged and left as it is; the others go on.
    pub async fn archive_now(&self) -> Result<crate::archive::ArchiveDone> {
        let mut all = crate::archive::ArchiveDone::default();
        let Some(store) = crate::archive::registered(self.dir()) else {
            return Ok(all);
        };
        for running in self.all_running() {
            if running.engine.failure().is_some() {
                continue;
            }
            match running.engine.archive(&store, now_ms()).await {
                Ok(done) => {
                    all.segments += done.segments;
                    all.records += done.records;
                    all.through_seq = all.through_seq.max(done.through_seq);
                }
                Err(e) => {
                    tracing::error!(deployment = %running.name, error = %e, "archiving the deployment's closed log segments failed; they stay on local disk")
                }
            }
        }
        Ok(all)
    }

    /// Starts a snapshot of every deployment that has one due (enough records or time since
    /// the last), on the task tracker, so restarts replay a bounded tail of the log.
    fn snapshot_tick(&self) {
        for running in self.all_running() {
            if !running.engine.snapshot_due() {
                continue;
            }
            let engine = running.engine.clone();
            self.services.tasks.spawn(async move {
                if let Err(e) = engine.snapshot().await {
                    tracing::warn!(deployment = %engine.name, error = %e, "snapshot failed; the next start replays more of the log");
                }
            });
        }
    }

    /// Reloads the deployments another replica moved to a newer revision (replicas on a
    /// PostgreSQL store see it in the shared log), from the store.
    async fn reload_newer(&self) {
        for running in self.all_running() {
            let Some(rev) = running.engine.newer_revision() else {
                continue;
            };
            let reloaded = async {
                let revision = self.services.store.get_deployment(&running.name).await?;
                let spec = crate::DeploymentSpec::from_json(&revision.spec)?;
                let variants = crate::variants::Variants::resolve(&spec, self.services.inference.as_deref()).await?;
                self.start(&revision, spec, variants).await
            };
            match reloaded.await {
                Ok(()) => {
                    tracing::info!(deployment = %running.name, revision = rev, "reloaded the revision another replica started")
                }
                Err(e) => {
                    tracing::error!(deployment = %running.name, revision = rev, error = %e, "cannot reload the revision another replica started")
                }
            }
        }
    }

    /// Pairs labels with the scores live monitors remember, for their AUC; returns how many
    /// labels matched a monitored prediction.
    pub fn observe_labels(&self, labels: &[keel_predlog::LabelRecord]) -> usize {
        let monitors: Vec<_> = self.all_running().iter().filter_map(|r| r.drift.clone()).collect();
        if monitors.is_empty() {
            return 0;
        }
        let now = now_ms();
        let mut matched = 0;
        for label in labels {
            if let Some(m) = monitors.iter().find(|m| m.knows(&label.prediction_id)) {
                matched += m.observe_labels(std::slice::from_ref(label), now);
            }
        }
        metrics::counter!("keel_labels_total", "matched" => "live_monitor").increment(matched as u64);
        matched
    }

    /// Loads drift monitors' references when due and runs due drift evaluations, on the
    /// task tracker (the CPU work on the blocking pool).
    fn tick_drift(&self, running: &RunningDeployment) {
        let Some(monitor) = &running.drift else { return };
        let now = now_ms();
        if let Some(source) = self.services.references.get()
            && monitor.begin_load(now)
        {
            let models = running.variants.serving();
            let output = running.scored_output().map(str::to_owned);
            let (source, monitor, name) = (source.clone(), monitor.clone(), running.name.clone());
            self.services.tasks.spawn(async move {
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
            let (monitor, name) = (monitor.clone(), running.name.clone());
            self.services.tasks.spawn(async move {
                let report = tokio::task::spawn_blocking(move || evaluation.run().map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the drift task failed: {e}")));
                monitor.finish_evaluation(&name, report);
            });
        }
    }

    /// Evaluates every deployment's alert rules: notifies webhooks (on the task tracker),
    /// records firings and resolutions in the change log, and rolls a deployment back to its
    /// previous revision when a firing rule says so. Run every second by the upkeep loop.
    pub async fn watch_tick(&self) -> Vec<AlertEvent> {
        let mut all = Vec::new();
        for running in self.all_running() {
            let name = running.name.as_str();
            self.tick_drift(&running);
            // The safeguards hold the rules: no need to take the deployment's decision lock.
            for (event, notify) in running.safeguards.evaluate(name, running.drift.as_deref(), now_ms()) {
                keel_guard::alert::notify_all(&self.services.tasks, &self.services.http, &event, &notify);
                let kind = if event.status == "firing" {
                    "alert.firing"
                } else {
                    "alert.resolved"
                };
                let details = serde_json::to_value(&event).unwrap_or_default();
                if let Err(e) = self
                    .services
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
                    && let Err(e) = self.roll_back(name, &event).await
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
        let store = &self.services.store;
        let history = store.deployment_history(name).await?;
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
        store
            .record_change(
                &by,
                "deployment.rollback",
                &format!("deployment/{name}/{}", revision.revision),
                &details,
            )
            .await?;
        Ok(())
    }
}
