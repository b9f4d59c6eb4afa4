//! One running deployment: its policy state, the decisions waiting for a reward, the
//! counters behind its report, and its durable log.
//!
//! Every state change is an event appended to the log under the same lock that applies it,
//! so replaying the log rebuilds exactly the state the process had: after a restart or a
//! `kill -9`, no acknowledged decision or reward is lost.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_bandit::{PolicyConfig, pick, sticky_unit};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::error::lock_err;
use crate::event::Event;
use crate::logfile::{damaged, scan};
use crate::notice::Notice;
use crate::outcome::{ClosedWindows, DecisionOut, FeedbackOut, RewardIn};
use crate::spec::{DeploymentSpec, RewardKind};
use crate::state::{Inner, compatible};
use crate::wal::{Durability, Wal};
use crate::{DeploymentError, Result};

pub(crate) struct Replayed {
    inner: Inner,
    good_len: u64,
    last_rev: Option<i64>,
    events: usize,
    path: PathBuf,
}

/// A running deployment.
pub struct Deployment {
    pub name: String,
    inner: Mutex<Inner>,
    wal: Wal,
    path: PathBuf,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("name", &self.name)
            .field("log", &self.path)
            .finish()
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Deployment {
    /// Rebuilds a deployment's state from its log without writing anything (the CLI report
    /// uses this while a server may be appending to the same log).
    pub(crate) fn replay(name: &str, spec: &DeploymentSpec, revision: i64, dir: &Path) -> Result<Replayed> {
        let path = dir.join(name).join("events.jsonl");
        // A revision that could not keep the learned state reset it; replay does the same.
        let mut inner = Inner::new(spec.clone(), revision)?;
        let mut last_rev = None;
        let check = scan(&path, |event| {
            if let Event::Revision { rev, reset, .. } = &event {
                last_rev = Some(*rev);
                if *reset {
                    let seq = inner.seq;
                    inner = Inner::new(spec.clone(), *rev)?;
                    inner.seq = seq;
                }
            }
            if matches!(event, Event::CanaryStep { .. }) {
                inner.counters.reset_all_steps();
            }
            inner.apply(&event)
        })?;
        if let Some(damage) = &check.damage {
            return Err(damaged(&path, damage));
        }
        if let Some(tail) = &check.torn_tail {
            tracing::warn!(deployment = name, path = %path.display(), offset = tail.offset, reason = %tail.reason, "the decision log ends in a torn record (never acknowledged); it is left out");
        }
        Ok(Replayed {
            inner,
            good_len: check.good_bytes,
            last_rev,
            events: check.records as usize,
            path,
        })
    }

    /// The report of a deployment rebuilt from its log, read-only.
    pub fn offline_report(name: &str, spec: &DeploymentSpec, revision: i64, dir: &Path) -> Result<crate::Report> {
        let r = Deployment::replay(name, spec, revision, dir)?;
        let waiting = r.inner.waiting.values().filter(|w| w.reward.is_none()).count();
        Ok(crate::report::build(name, &r.inner, waiting))
    }

    /// Opens (or recovers) a deployment from its log, starting `revision` of `spec`.
    pub fn open(
        name: &str,
        spec: DeploymentSpec,
        revision: i64,
        dir: &Path,
        durability: Durability,
    ) -> Result<Deployment> {
        let Replayed {
            inner,
            good_len,
            last_rev,
            events,
            path,
        } = Deployment::replay(name, &spec, revision, dir)?;
        let replayed = events;
        let wal = Wal::open(&path, good_len, inner.seq, durability)?;
        let experiment = Deployment {
            name: name.to_string(),
            inner: Mutex::new(inner),
            wal,
            path,
        };
        if last_rev != Some(revision) {
            let mut inner = experiment.inner.lock().map_err(|_| lock_err())?;
            let reset = last_rev.is_some() && !compatible(&inner.spec, &spec);
            if reset {
                let seq = inner.seq;
                *inner = Inner::new(spec.clone(), revision)?;
                inner.seq = seq;
            }
            inner.revision = revision;
            inner.spec = spec;
            let seq = inner.next_seq();
            let event = Event::Revision {
                seq,
                ts: now_ms(),
                rev: revision,
                reset,
            };
            inner.commit(&experiment.wal, &event)?;
        }
        {
            // Re-seed so decisions after a restart do not repeat those before it.
            let mut inner = experiment.inner.lock().map_err(|_| lock_err())?;
            let seed = inner.spec.seed ^ inner.seq.rotate_left(17);
            inner.rng = ChaCha8Rng::seed_from_u64(seed);
        }
        experiment.wal.notify();
        tracing::info!(deployment = name, revision, replayed, "deployment ready");
        Ok(experiment)
    }

    pub fn log_path(&self) -> &Path {
        &self.path
    }

    /// An error once the log writer has failed: the state in memory may then hold events that
    /// never reached the disk, so it answers nothing until the deployment is opened again.
    pub fn serving(&self) -> Result<()> {
        match self.wal.failure() {
            None => Ok(()),
            Some(failure) => Err(DeploymentError::Log(format!(
                "deployment '{}' stopped serving: {failure}",
                self.name
            ))),
        }
    }

    /// Why the deployment stopped serving, if its log writer failed.
    pub fn failure(&self) -> Option<String> {
        self.serving().err().map(|e| e.to_string())
    }

    /// Runs `f` on the locked state (reports, tests).
    pub(crate) fn with_inner<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T> {
        let mut inner = self.inner.lock().map_err(|_| lock_err())?;
        Ok(f(&mut inner))
    }

    /// Chooses a variant for a unit, logs the decision durably, and returns it.
    /// `predict` runs the chosen model variant (and shadows) when the deployment has any.
    pub async fn decide(
        &self,
        unit: Option<&str>,
        context: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(DecisionOut, Vec<Notice>)> {
        self.serving()?;
        let (out, seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let x = inner.spec.encode_context(context)?;
            let now = now_ms();
            let arms = inner.spec.arms();
            let probs = inner.arm_distribution((!x.is_empty()).then_some(x.as_slice()))?;
            // Control group: a sticky share of units always gets the control variant.
            let (variant, propensity, hold) = {
                let control = inner.spec.control.clone();
                let u_hold = match unit {
                    Some(u) => sticky_unit(&format!("{}#control", self.name), u),
                    None => rand::Rng::random::<f64>(&mut inner.rng),
                };
                let u_pick = match (unit, &inner.spec.policy) {
                    (Some(u), PolicyConfig::FixedWeights { .. }) => sticky_unit(&self.name, u),
                    _ => rand::Rng::random::<f64>(&mut inner.rng),
                };
                let arm = pick(&probs, u_pick);
                match control {
                    Some(c) => {
                        let cv = inner.spec.variant_index(&c.variant).unwrap_or(0);
                        let p_c = arms.iter().position(|v| *v == cv).map_or(0.0, |i| probs[i]);
                        if u_hold < c.share {
                            (cv, c.share + (1.0 - c.share) * p_c, true)
                        } else {
                            let v = arms[arm];
                            let p = (1.0 - c.share) * probs[arm] + if v == cv { c.share } else { 0.0 };
                            (v, p, false)
                        }
                    }
                    None => (arms[arm], probs[arm], false),
                }
            };
            let id = Uuid::now_v7();
            let seq = inner.next_seq();
            let pv = inner.policy.updates();
            let event = Event::Decision {
                seq,
                ts: now,
                id,
                unit: unit.map(str::to_string),
                v: variant,
                p: propensity,
                pv,
                hold,
                ctx: if inner.spec.context.is_empty() {
                    context.map(|c| serde_json::Value::Object(c.clone()))
                } else {
                    None
                },
                x,
                probs,
                pred: None,
                shadow: None,
            };
            inner.commit(&self.wal, &event)?;
            let out = DecisionOut {
                decision_id: id.to_string(),
                deployment: self.name.clone(),
                variant: inner.spec.variants[variant].name.clone(),
                propensity,
                policy_version: pv,
                revision: inner.revision,
                control: hold,
                prediction: None,
                prediction_id: None,
                fallback: None,
                response: None,
            };
            (out, seq, std::mem::take(&mut inner.notices))
        };
        self.wal.notify();
        self.wal.wait_durable(seq).await?;
        Ok((out, notices))
    }

    /// Records rewards; each is idempotent (the same reward again counts once).
    pub async fn feedback(&self, items: &[RewardIn]) -> Result<(Vec<Result<FeedbackOut>>, Vec<Notice>)> {
        self.serving()?;
        let (results, last_seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let now = now_ms();
            let mut results = Vec::with_capacity(items.len());
            let mut last_seq = 0;
            for item in items {
                let r = self.one_reward(&mut inner, item, now);
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

    fn one_reward(&self, inner: &mut Inner, item: &RewardIn, now: i64) -> Result<(FeedbackOut, Option<u64>)> {
        let id = Uuid::parse_str(&item.decision_id).map_err(|_| {
            DeploymentError::InvalidRequest(format!(
                "decision_id '{}' is not a decision id (a UUID returned by decide)",
                item.decision_id.escape_default()
            ))
        })?;
        let spec = &inner.spec.reward;
        if !item.reward.is_finite() || item.reward < spec.min || item.reward > spec.max {
            return Err(DeploymentError::InvalidRequest(format!(
                "reward {} is outside the declared range [{}, {}]{}",
                item.reward,
                spec.min,
                spec.max,
                if spec.kind == RewardKind::Binary {
                    " (a conversion is 1, none is 0)"
                } else {
                    ""
                }
            )));
        }
        let window = inner.window_ms();
        let Some(waiting) = inner.waiting.get(&id) else {
            // Forgotten ids are those whose window closed: the id carries its creation time.
            if let Some(ts) = uuid_ms(&id)
                && ts + window < now
            {
                return Err(DeploymentError::WindowClosed {
                    id: item.decision_id.clone(),
                    closed_at: fmt_ms(ts + window),
                    window_seconds: inner.spec.reward.window_seconds,
                });
            }
            return Err(DeploymentError::UnknownDecision(item.decision_id.clone()));
        };
        if waiting.ts + window < now {
            return Err(DeploymentError::WindowClosed {
                id: item.decision_id.clone(),
                closed_at: fmt_ms(waiting.ts + window),
                window_seconds: inner.spec.reward.window_seconds,
            });
        }
        if let Some(existing) = waiting.reward {
            if existing == item.reward {
                return Ok((
                    FeedbackOut {
                        decision_id: item.decision_id.clone(),
                        counted: false,
                    },
                    None,
                ));
            }
            return Err(DeploymentError::ConflictingReward {
                id: item.decision_id.clone(),
                existing,
                new: item.reward,
            });
        }
        let variant = waiting.variant;
        let seq = inner.next_seq();
        let event = Event::Reward {
            seq,
            ts: now,
            id,
            r: item.reward,
            default: false,
        };
        inner.commit(&self.wal, &event)?;
        inner.check_guardrails(&self.wal, variant, now)?;
        Ok((
            FeedbackOut {
                decision_id: item.decision_id.clone(),
                counted: true,
            },
            Some(inner.seq),
        ))
    }

    /// Closes the windows that ended before `now`: applies the default reward to decisions
    /// that got none, forgets the others. Returns how many closed, the default rewards applied
    /// (decision id, reward) and the notices of guardrails they moved.
    pub async fn close_windows(&self, now: i64) -> Result<ClosedWindows> {
        self.serving()?;
        let mut defaults = Vec::new();
        let (closed, seq, notices) = {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let mut closed = 0;
            let mut last = 0;
            while let Some((expires, id)) = inner.expiry.front().copied() {
                if expires > now {
                    break;
                }
                inner.expiry.pop_front();
                let Some(w) = inner.waiting.get(&id) else { continue };
                closed += 1;
                match (w.reward, inner.spec.reward.default) {
                    (None, Some(default)) => {
                        let variant = w.variant;
                        let seq = inner.next_seq();
                        let event = Event::Reward {
                            seq,
                            ts: now,
                            id,
                            r: default,
                            default: true,
                        };
                        inner.commit(&self.wal, &event)?;
                        inner.check_guardrails(&self.wal, variant, now)?;
                        last = inner.seq;
                        defaults.push((id.to_string(), default));
                    }
                    _ => {
                        inner.waiting.remove(&id);
                    }
                }
            }
            (closed, last, std::mem::take(&mut inner.notices))
        };
        if seq > 0 {
            self.wal.notify();
            self.wal.wait_durable(seq).await?;
        }
        Ok(ClosedWindows {
            closed,
            defaults,
            notices,
        })
    }

    /// Logs a model variant's answer to a decision (no durability wait: it changes no state).
    pub fn log_output(&self, id: &str, variant: usize, shadow: bool, pred: serde_json::Value) -> Result<()> {
        let id = Uuid::parse_str(id).map_err(|_| DeploymentError::InvalidRequest(format!("bad decision id {id}")))?;
        {
            let mut inner = self.inner.lock().map_err(|_| lock_err())?;
            let seq = inner.next_seq();
            let event = Event::Output {
                seq,
                ts: now_ms(),
                id,
                v: variant,
                shadow,
                pred,
            };
            inner.commit(&self.wal, &event)?;
        }
        self.wal.notify();
        Ok(())
    }

    /// The variant index of a name.
    pub fn variant_index(&self, name: &str) -> Result<Option<usize>> {
        self.with_inner(|i| i.spec.variant_index(name))
    }

    /// Decisions inside their attribution window that have no reward yet.
    pub fn waiting(&self) -> Result<usize> {
        self.serving()?;
        self.with_inner(|i| i.waiting.values().filter(|w| w.reward.is_none()).count())
    }

    /// Stops the log writer after flushing it.
    pub fn close(&self) {
        self.wal.close();
    }
}

fn uuid_ms(id: &Uuid) -> Option<i64> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(secs as i64 * 1000 + i64::from(nanos / 1_000_000))
}

fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}
