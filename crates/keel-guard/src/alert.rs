//! Alert rules over a deployment's signals, their states, and webhook notifications.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Result, invalid};

/// One rule: a condition that must hold for `for_seconds` before the alert fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires (0: at once).
    #[serde(default)]
    pub for_seconds: u64,
    /// Where to send firing and resolved notifications.
    #[serde(default)]
    pub notify: Vec<Notifier>,
    /// Roll the deployment back to its previous revision when the alert fires.
    #[serde(default)]
    pub rollback: bool,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The SLO's error-budget burn rate is above this (1 = exactly on budget).
    SloBurnRate { above: f64 },
    /// Output guardrails held back at least this many answers since the last evaluation.
    Guardrail {
        #[serde(default = "one")]
        at_least: u64,
    },
    /// A drift score (of `column`, or the largest over all columns) is above this.
    Drift {
        above: f64,
        #[serde(default)]
        column: Option<String>,
    },
    /// The AUC of labelled predictions fell below this.
    AucBelow { below: f64 },
}

fn one() -> u64 {
    1
}

/// A webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifier {
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// A webhook that has not answered by then counts as failed.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    5
}

/// The body sent to a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The [`AlertEvent`] as JSON.
    #[default]
    Json,
    /// `{"text": ...}`, as Slack incoming webhooks (and Mattermost, Teams connectors) take.
    Slack,
}

impl AlertRule {
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(invalid("alert rule", "name must not be empty"));
        }
        let finite = |x: f64| x.is_finite();
        let ok = match &self.condition {
            Condition::SloBurnRate { above } => finite(*above) && *above > 0.0,
            Condition::Guardrail { at_least } => *at_least > 0,
            Condition::Drift { above, .. } => finite(*above) && *above > 0.0,
            Condition::AucBelow { below } => finite(*below) && (0.0..=1.0).contains(below),
        };
        if !ok {
            return Err(invalid(
                "alert rule",
                format!("{}: the condition's threshold is out of range", self.name),
            ));
        }
        for n in &self.notify {
            if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
                return Err(invalid(
                    "alert rule",
                    format!("{}: webhook url {:?} must be http(s)", self.name, n.url),
                ));
            }
            if !(1..=60).contains(&n.timeout_seconds) {
                return Err(invalid(
                    "alert rule",
                    format!("{}: timeout_seconds must be 1..=60", self.name),
                ));
            }
        }
        Ok(())
    }
}

/// The figures rules are evaluated on; `None` when unknown (a rule on an unknown figure holds
/// its state).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Signals {
    pub burn_rate: Option<f64>,
    /// Answers held back by output guardrails since the last evaluation.
    pub guardrail_trips: u64,
    /// Drift score per column.
    pub drift: BTreeMap<String, f64>,
    pub auc: Option<f64>,
}

/// Where one rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    Ok,
    Pending { since_ms: i64 },
    Firing { since_ms: i64 },
}

/// A firing or resolution, to notify and record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub deployment: String,
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub value: f64,
    pub message: String,
    pub at_ms: i64,
    pub rollback: bool,
}

impl AlertEvent {
    /// The body for a webhook of this format.
    pub fn body(&self, format: WebhookFormat) -> serde_json::Value {
        match format {
            WebhookFormat::Json => serde_json::to_value(self).unwrap_or_else(|_| json!({})),
            WebhookFormat::Slack => json!({
                "text": format!(
                    "{} keel alert *{}* on deployment `{}`: {}",
                    if self.status == "firing" { ":rotating_light:" } else { ":white_check_mark:" },
                    self.rule,
                    self.deployment,
                    self.message
                )
            }),
        }
    }
}

/// The rules of one deployment and their states.
#[derive(Debug, Clone)]
pub struct Alerts {
    rules: Vec<(AlertRule, AlertState)>,
}

impl Alerts {
    pub fn new(rules: Vec<AlertRule>) -> Alerts {
        Alerts {
            rules: rules.into_iter().map(|r| (r, AlertState::Ok)).collect(),
        }
    }

    pub fn states(&self) -> Vec<(&AlertRule, AlertState)> {
        self.rules.iter().map(|(r, s)| (r, *s)).collect()
    }

    /// Moves every rule along with `signals` at `now_ms`; returns the firings and resolutions.
    pub fn evaluate(&mut self, deployment: &str, signals: &Signals, now_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (rule, state) in &mut self.rules {
            let Some((holds, value, what)) = measure(&rule.condition, signals) else {
                continue;
            };
            let next = match (*state, holds) {
                (AlertState::Ok, true) if rule.for_seconds == 0 => AlertState::Firing { since_ms: now_ms },
                (AlertState::Ok, true) => AlertState::Pending { since_ms: now_ms },
                (AlertState::Pending { since_ms }, true)
                    if now_ms - since_ms >= (rule.for_seconds as i64).saturating_mul(1000) =>
                {
                    AlertState::Firing { since_ms: now_ms }
                }
                (s, true) => s,
                (_, false) => AlertState::Ok,
            };
            let fired = matches!(next, AlertState::Firing { .. }) && !matches!(*state, AlertState::Firing { .. });
            let resolved = matches!(*state, AlertState::Firing { .. }) && next == AlertState::Ok;
            if fired || resolved {
                events.push(AlertEvent {
                    deployment: deployment.to_owned(),
                    rule: rule.name.clone(),
                    status: if fired { "firing" } else { "resolved" },
                    value,
                    message: format!("{what} is {value:.4}"),
                    at_ms: now_ms,
                    rollback: fired && rule.rollback,
                });
            }
            *state = next;
        }
        events
    }
}

/// Whether the condition holds, the value it looked at, and a name for that value.
fn measure(condition: &Condition, s: &Signals) -> Option<(bool, f64, String)> {
    match condition {
        Condition::SloBurnRate { above } => {
            let v = s.burn_rate?;
            Some((v > *above, v, format!("the SLO burn rate (threshold {above})")))
        }
        Condition::Guardrail { at_least } => {
            let v = s.guardrail_trips as f64;
            Some((
                s.guardrail_trips >= *at_least,
                v,
                format!("answers held back by guardrails (threshold {at_least})"),
            ))
        }
        Condition::Drift { above, column } => {
            let (name, v) = match column {
                Some(c) => (c.clone(), *s.drift.get(c)?),
                None => s
                    .drift
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(k, v)| (k.clone(), *v))?,
            };
            Some((v > *above, v, format!("drift of {name} (threshold {above})")))
        }
        Condition::AucBelow { below } => {
            let v = s.auc?;
            Some((v < *below, v, format!("AUC (threshold {below})")))
        }
    }
}

/// Sends `event` to every webhook in the background, on `tasks` (so its owner can wait for the
/// deliveries at shutdown). Each attempt is timed out; outcomes are counted in
/// `keel_alert_notifications_total{result}` and logged, never returned: a hanging or failing
/// webhook costs the caller nothing.
pub fn notify_all(
    tasks: &tokio_util::task::TaskTracker,
    client: &reqwest::Client,
    event: &AlertEvent,
    notifiers: &[Notifier],
) {
    if event.status == "firing"
        && let Some(events) = crate::webhook::installed()
    {
        let data = serde_json::to_value(event).unwrap_or_default();
        tasks.spawn(async move { events.emit("alert.fired", data).await });
    }
    for n in notifiers {
        let (client, n, body) = (client.clone(), n.clone(), event.body(n.format));
        let rule = event.rule.clone();
        tasks.spawn(async move {
            let result = send(&client, &n, &body).await;
            let label = match &result {
                Ok(()) => "ok",
                Err(Failure::Timeout) => "timeout",
                Err(Failure::Status(_)) | Err(Failure::Transport(_)) => "failed",
            };
            metrics::counter!("keel_alert_notifications_total", "result" => label).increment(1);
            if let Err(e) = result {
                tracing::warn!(rule, url = %n.url, error = ?e, "alert notification failed");
            }
        });
    }
}

/// Why a notification failed (the one sender's failures).
pub use crate::webhook::Failure;

/// Sends one notification and waits for the answer (at most the notifier's timeout).
pub async fn send(
    client: &reqwest::Client,
    n: &Notifier,
    body: &serde_json::Value,
) -> std::result::Result<(), Failure> {
    let bytes = serde_json::to_vec(body).map_err(|e| Failure::Transport(e.to_string()))?;
    crate::webhook::post(client, &n.url, bytes, &[], Duration::from_secs(n.timeout_seconds))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(condition: Condition, for_seconds: u64) -> AlertRule {
        AlertRule {
            name: "r".into(),
            condition,
            for_seconds,
            notify: vec![],
            rollback: true,
        }
    }

    #[test]
    fn a_rule_fires_after_holding_and_resolves() {
        let mut a = Alerts::new(vec![rule(Condition::SloBurnRate { above: 2.0 }, 10)]);
        let hot = Signals {
            burn_rate: Some(5.0),
            ..Signals::default()
        };
        assert!(a.evaluate("d", &hot, 0).is_empty(), "pending first");
        assert!(a.evaluate("d", &hot, 9_000).is_empty());
        let fired = a.evaluate("d", &hot, 10_000);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].status, fired[0].rollback, fired[0].value),
            ("firing", true, 5.0)
        );
        assert!(a.evaluate("d", &hot, 11_000).is_empty(), "fires once");
        let cool = Signals {
            burn_rate: Some(0.5),
            ..Signals::default()
        };
        let resolved = a.evaluate("d", &cool, 12_000);
        assert_eq!((resolved[0].status, resolved[0].rollback), ("resolved", false));
        // A blip shorter than for_seconds never fires.
        assert!(a.evaluate("d", &hot, 20_000).is_empty());
        assert!(a.evaluate("d", &cool, 21_000).is_empty());
        assert!(a.evaluate("d", &hot, 40_000).is_empty());
    }

    #[test]
    fn drift_guardrail_and_auc_conditions() {
        let mut drift = BTreeMap::new();
        drift.insert("age".to_string(), 0.05);
        drift.insert("income".to_string(), 0.3);
        let s = Signals {
            drift,
            guardrail_trips: 2,
            auc: Some(0.61),
            burn_rate: None,
        };
        let mut a = Alerts::new(vec![
            rule(
                Condition::Drift {
                    above: 0.1,
                    column: None,
                },
                0,
            ),
            rule(
                Condition::Drift {
                    above: 0.1,
                    column: Some("age".into()),
                },
                0,
            ),
            rule(Condition::Guardrail { at_least: 3 }, 0),
            rule(Condition::AucBelow { below: 0.7 }, 0),
            rule(Condition::SloBurnRate { above: 1.0 }, 0),
        ]);
        let events = a.evaluate("d", &s, 0);
        let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(events.len(), 2, "{messages:?}");
        assert!(messages[0].contains("drift of income"));
        assert!(messages[1].contains("AUC"));
    }

    #[test]
    fn bodies_and_validation() {
        let e = AlertEvent {
            deployment: "promo".into(),
            rule: "burn".into(),
            status: "firing",
            value: 3.0,
            message: "the SLO burn rate is 3".into(),
            at_ms: 1,
            rollback: false,
        };
        assert_eq!(e.body(WebhookFormat::Json)["rule"], "burn");
        assert!(
            e.body(WebhookFormat::Slack)["text"]
                .as_str()
                .unwrap()
                .contains("`promo`")
        );
        assert!(rule(Condition::AucBelow { below: 2.0 }, 0).validate().is_err());
        let mut r = rule(Condition::Guardrail { at_least: 1 }, 0);
        r.notify.push(Notifier {
            url: "ftp://x".into(),
            format: WebhookFormat::Json,
            timeout_seconds: 5,
        });
        assert!(r.validate().is_err());
    }
}
