//! A running deployment's safeguards: its SLO, the output guards on its model variants'
//! answers, and its alert rules (which may roll it back). One per running revision; a new
//! revision starts fresh ones.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_guard::alert::Alerts;
use keel_guard::{AlertEvent, OutputGuard, Signals, SloStatus, SloTracker, Violation};
use serde::Serialize;

use crate::drift::DriftMonitor;
use crate::spec::{DeploymentSpec, OutputGuardsSpec};

/// Where a deployment stands: for `GET /v1/deployments/{name}/health` and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub deployment: String,
    pub revision: i64,
    pub slo: Option<SloStatus>,
    /// Answers held back by output guardrails since the revision started, per variant and kind.
    pub guardrail_trips: BTreeMap<String, u64>,
    pub alerts: Vec<AlertStatus>,
    /// Live monitoring: data quality, the last drift window, the AUC of labelled predictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::drift::MonitorStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertStatus {
    pub rule: String,
    pub state: keel_guard::AlertState,
    pub rollback: bool,
}

/// The SLO tracker, output guards and alert rules of one running revision.
pub(crate) struct Safeguards {
    slo: Option<Mutex<SloTracker>>,
    guards: Mutex<BTreeMap<usize, OutputGuard>>,
    guard_spec: Option<OutputGuardsSpec>,
    alerts: Mutex<Alerts>,
    /// Trips since the last alert evaluation.
    trips_pending: AtomicU64,
    trips_total: Mutex<BTreeMap<String, u64>>,
}

impl Safeguards {
    pub(crate) fn new(spec: &DeploymentSpec) -> Safeguards {
        Safeguards {
            slo: spec.slo.clone().map(|s| Mutex::new(SloTracker::new(s))),
            guards: Mutex::new(BTreeMap::new()),
            guard_spec: spec.output_guardrails.clone(),
            alerts: Mutex::new(Alerts::new(spec.alerts.clone())),
            trips_pending: AtomicU64::new(0),
            trips_total: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn guard_spec(&self) -> Option<&OutputGuardsSpec> {
        self.guard_spec.as_ref()
    }

    /// Records one answered (or failed) decision for the SLO.
    pub(crate) fn record(&self, now_ms: i64, latency_ms: f64, error: bool) {
        if let Some(slo) = &self.slo
            && let Ok(mut t) = slo.lock()
        {
            t.record(now_ms, latency_ms, error);
        }
    }

    /// Checks a variant's answer; `Some` means it must not go out.
    pub(crate) fn check(
        &self,
        deployment: &str,
        variant: usize,
        name: &str,
        values: &[f64],
        rows: &[f64],
    ) -> Option<Violation> {
        let spec = self.guard_spec.as_ref()?;
        let violation = {
            let mut guards = self.guards.lock().ok()?;
            guards
                .entry(variant)
                .or_insert_with(|| OutputGuard::new(spec.guard_spec()))
                .check(values, rows)
        }?;
        self.trips_pending.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut total) = self.trips_total.lock() {
            *total.entry(format!("{name}/{}", violation.kind())).or_default() += 1;
        }
        metrics::counter!(
            "keel_guardrail_trips_total",
            "deployment" => deployment.to_owned(), "variant" => name.to_owned(), "kind" => violation.kind()
        )
        .increment(1);
        Some(violation)
    }

    /// Evaluates the alert rules at `now_ms`; returns firings and resolutions, each with the
    /// webhooks of its rule.
    pub(crate) fn evaluate(
        &self,
        deployment: &str,
        drift: Option<&DriftMonitor>,
        now_ms: i64,
    ) -> Vec<(AlertEvent, Vec<keel_guard::Notifier>)> {
        let slo = self.slo_status(now_ms);
        if let Some(s) = &slo {
            metrics::gauge!("keel_slo_burn_rate", "deployment" => deployment.to_owned()).set(s.burn_rate);
            metrics::gauge!("keel_slo_availability", "deployment" => deployment.to_owned()).set(s.availability);
        }
        let (drift, auc) = match drift {
            Some(m) => {
                m.publish(deployment);
                let (auc, labelled) = m.auc(now_ms);
                if let Some(a) = auc {
                    metrics::gauge!("keel_live_auc", "deployment" => deployment.to_owned()).set(a);
                }
                metrics::gauge!("keel_live_labelled", "deployment" => deployment.to_owned()).set(labelled as f64);
                (m.signals(), auc)
            }
            None => (BTreeMap::new(), None),
        };
        let signals = Signals {
            burn_rate: slo.filter(|s| s.requests > 0).map(|s| s.burn_rate),
            guardrail_trips: self.trips_pending.swap(0, Ordering::Relaxed),
            drift,
            auc,
        };
        let Ok(mut alerts) = self.alerts.lock() else {
            return Vec::new();
        };
        let events = alerts.evaluate(deployment, &signals, now_ms);
        let states = alerts.states();
        for (rule, state) in &states {
            let firing = matches!(state, keel_guard::AlertState::Firing { .. });
            metrics::gauge!("keel_alert_firing", "deployment" => deployment.to_owned(), "rule" => rule.name.clone())
                .set(if firing { 1.0 } else { 0.0 });
        }
        events
            .into_iter()
            .map(|e| {
                let notify = states
                    .iter()
                    .find(|(r, _)| r.name == e.rule)
                    .map(|(r, _)| r.notify.clone())
                    .unwrap_or_default();
                (e, notify)
            })
            .collect()
    }

    fn slo_status(&self, now_ms: i64) -> Option<SloStatus> {
        self.slo.as_ref()?.lock().ok().map(|mut t| t.status(now_ms))
    }

    pub(crate) fn health(&self, deployment: &str, revision: i64, drift: Option<&DriftMonitor>, now_ms: i64) -> Health {
        Health {
            deployment: deployment.to_owned(),
            revision,
            slo: self.slo_status(now_ms),
            guardrail_trips: self.trips_total.lock().map(|t| t.clone()).unwrap_or_default(),
            alerts: self
                .alerts
                .lock()
                .map(|a| {
                    a.states()
                        .into_iter()
                        .map(|(r, s)| AlertStatus {
                            rule: r.name.clone(),
                            state: s,
                            rollback: r.rollback,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            monitor: drift.map(|m| m.status(now_ms)),
        }
    }
}
