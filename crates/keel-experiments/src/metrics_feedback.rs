//! Feedback items that carry the decision metric (`reward`), other declared metrics, or both,
//! at any time inside the decision's attribution window.
//!
//! Every value of an item is checked before anything is written (a known decision whose window
//! is open, a known metric, a value of its kind in its range), so an item is taken whole or not
//! at all. Each (decision, metric) counts once: the same value again is a duplicate (counted
//! once, `counted: false` when nothing in the item was new), a different one a conflict
//! (`conflicting_reward`, `conflicting_metric`). The reward is logged as a `Reward` event as
//! before; the metrics new to the decision as one `Metrics` event.
//!
//! On a PostgreSQL store (replicas) the same checks run against the replica's state, and
//! which replica's value counts first is decided by PostgreSQL: the reward by
//! `deployment_rewards`, each metric value by `deployment_metrics` (see [`crate::pglog`]), so
//! the rules hold across replicas ([`Deployment::feedback_pg`]).

use std::collections::BTreeMap;

use crate::engine::{Deployment, now_ms};
use crate::error::lock_err;
use crate::event::Event;
use crate::feedback::{check_reward_value, open_decision, parse_decision_id};
use crate::notice::Notice;
use crate::outcome::{FeedbackIn, FeedbackOut};
use crate::state::Inner;
use crate::{DeploymentError, Result};

/// An item as recorded: a metric named after the decision metric is its reward.
fn normalise(item: &FeedbackIn, reward_name: &str) -> Result<FeedbackIn> {
    let mut out = item.clone();
    if let Some(r) = out.metrics.remove(reward_name) {
        match out.reward {
            Some(given) if given != r => {
                return Err(DeploymentError::InvalidRequest(format!(
                    "the item gives the decision metric twice, as \"reward\": {given} and as metrics.{reward_name}: {r}; give it once"
                )));
            }
            _ => out.reward = Some(r),
        }
    }
    if out.reward.is_none() && out.metrics.is_empty() {
        return Err(DeploymentError::InvalidRequest(format!(
            "feedback for decision '{}' carries neither \"reward\" nor \"metrics\"",
            item.decision_id.escape_default()
        )));
    }
    Ok(out)
}

impl Deployment {
    /// Records feedback items (rewards, other metrics, or both); each answers on its own, and
    /// each (decision, metric) counts once (see the module).
    pub async fn feedback_items(&self, items: &[FeedbackIn]) -> Result<(Vec<Result<FeedbackOut>>, Vec<Notice>)> {
        self.serving()?;
        let reward_name = self.with_inner(|i| i.spec.reward_name().to_string())?;
        let items: Vec<Result<FeedbackIn>> = items.iter().map(|i| normalise(i, &reward_name)).collect();
        if let Some(pg) = self.wal.pg() {
            return self.feedback_pg(pg, items).await;
        }
        let (results, last_seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let now = now_ms();
            let mut results = Vec::with_capacity(items.len());
            let mut last_seq = 0;
            for item in items {
                let r = item.and_then(|item| self.one_item(&mut inner, &item, now));
                if let Ok((_, Some(seq))) = &r {
                    last_seq = *seq;
                }
                results.push(r.map(|(out, _)| out));
            }
            (results, last_seq, std::mem::take(&mut inner.notices))
        };
        if last_seq > 0 {
            self.wal.notify();
            self.wal.wait_durable(last_seq).await?;
        }
        Ok((results, notices))
    }

    /// Checks, then logs and applies, one normalised item; the sequence number of its last
    /// event, if it logged any.
    fn one_item(&self, inner: &mut Inner, item: &FeedbackIn, now: i64) -> Result<(FeedbackOut, Option<u64>)> {
        let mut checked = self.check_item(inner, item, now)?;
        let counted = checked.counts();
        if let Some(event) = checked.reward_event(inner, now) {
            inner.commit(&self.wal, &event)?;
            if let Some(variant) = checked.variant {
                inner.check_guardrails(&self.wal, variant, now)?;
            }
        }
        if let Some(event) = checked.metrics_event(inner, now) {
            inner.commit(&self.wal, &event)?;
            if let Some(variant) = checked.variant {
                inner.check_metric_guardrails(&self.wal, variant, now)?;
            }
        }
        let out = FeedbackOut {
            decision_id: item.decision_id.clone(),
            counted,
        };
        Ok((out, counted.then_some(inner.seq)))
    }

    /// Checks a normalised item against the state: a decision id, values of known metrics in
    /// their ranges, a known decision whose window is open, no value that conflicts with one
    /// the decision has; what of it is new to the decision.
    pub(crate) fn check_item(&self, inner: &Inner, item: &FeedbackIn, now: i64) -> Result<Checked> {
        let id = parse_decision_id(&item.decision_id)?;
        if let Some(r) = item.reward {
            check_reward_value(inner, r)?;
        }
        for (name, value) in &item.metrics {
            let Some(metric) = inner.spec.metric(name) else {
                let mut known: Vec<&str> = vec![inner.spec.reward_name()];
                known.extend(inner.spec.metrics.iter().map(|m| m.name.as_str()));
                return Err(DeploymentError::InvalidRequest(format!(
                    "'{}' is not a metric of deployment '{}' (its metrics: {})",
                    name.escape_default(),
                    self.name,
                    known.join(", ")
                )));
            };
            if let Some(why) = metric.refuse(*value) {
                return Err(DeploymentError::InvalidRequest(why));
            }
        }
        let waiting = open_decision(inner, &id, &item.decision_id, now)?;
        let reward = match (item.reward, waiting.reward()) {
            (Some(r), Some(existing)) if existing == r => None,
            (Some(r), Some(existing)) => {
                return Err(DeploymentError::ConflictingReward {
                    id: item.decision_id.clone(),
                    existing,
                    new: r,
                });
            }
            (r, None) => r,
            (None, Some(_)) => None,
        };
        let mut metrics = BTreeMap::new();
        for (name, value) in &item.metrics {
            match inner.waiting.metric(&id, name) {
                Some(existing) if existing == *value => {}
                Some(existing) => {
                    return Err(DeploymentError::ConflictingMetric {
                        id: item.decision_id.clone(),
                        metric: name.clone(),
                        existing,
                        new: *value,
                    });
                }
                None => {
                    metrics.insert(name.clone(), *value);
                }
            }
        }
        Ok(Checked {
            id,
            variant: waiting.variant(),
            reward,
            metrics,
        })
    }
}

/// What of a feedback item is new to its decision, once checked.
pub(crate) struct Checked {
    pub(crate) id: uuid::Uuid,
    /// The variant the decision chose (none for a unit held back with no action).
    pub(crate) variant: Option<usize>,
    /// The reward, unless the decision has it already.
    pub(crate) reward: Option<f64>,
    /// The metric values the decision does not have yet.
    pub(crate) metrics: BTreeMap<String, f64>,
}

impl Checked {
    pub(crate) fn counts(&self) -> bool {
        self.reward.is_some() || !self.metrics.is_empty()
    }

    /// The `Reward` record of the item's new reward, numbered next in `inner`.
    pub(crate) fn reward_event(&self, inner: &mut Inner, now: i64) -> Option<Event> {
        self.reward.map(|r| Event::Reward {
            seq: inner.next_seq(),
            ts: now,
            id: self.id,
            r,
            default: false,
        })
    }

    /// The `Metrics` record of the item's new values (taken from it), numbered next in `inner`.
    pub(crate) fn metrics_event(&mut self, inner: &mut Inner, now: i64) -> Option<Event> {
        if self.metrics.is_empty() {
            return None;
        }
        Some(Event::Metrics {
            seq: inner.next_seq(),
            ts: now,
            id: self.id,
            m: std::mem::take(&mut self.metrics),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_named_after_the_decision_metric_is_the_reward() {
        let item = FeedbackIn {
            decision_id: "d".into(),
            reward: None,
            metrics: [("revenue".to_string(), 12.5), ("unsubscribe".to_string(), 0.0)].into(),
        };
        let n = normalise(&item, "revenue").expect("ok");
        assert_eq!(n.reward, Some(12.5));
        assert_eq!(n.metrics.keys().collect::<Vec<_>>(), ["unsubscribe"]);
        let twice = FeedbackIn {
            reward: Some(3.0),
            ..item.clone()
        };
        let err = normalise(&twice, "revenue").expect_err("twice").to_string();
        assert!(err.contains("gives the decision metric twice"), "{err}");
        let same = FeedbackIn {
            reward: Some(12.5),
            ..item
        };
        assert_eq!(normalise(&same, "revenue").expect("same value").reward, Some(12.5));
        let empty = FeedbackIn {
            decision_id: "d".into(),
            ..FeedbackIn::default()
        };
        assert!(
            normalise(&empty, "reward")
                .expect_err("empty")
                .to_string()
                .contains("neither")
        );
    }
}
