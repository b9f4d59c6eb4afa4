//! One running deployment: its policy state, the decisions waiting for a reward, the
//! counters behind its report, and its durable log.
//!
//! Every state change is an event appended to the log under the same lock that applies it,
//! so replaying the log rebuilds exactly the state the process had: after a restart or a
//! `kill -9`, no acknowledged decision or reward is lost.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_bandit::{PolicyConfig, PolicyState, pick, sticky_unit};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::spec::{DeploymentSpec, RewardKind};
use crate::stats::Counters;
use crate::wal::{Durability, Wal, read_events};
use crate::{DeploymentError, Result};

/// An event of the log. Field names are short: there is one line per decision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// The deployment started serving this revision.
    Revision { seq: u64, ts: i64, rev: i64, reset: bool },
    Decision {
        seq: u64,
        ts: i64,
        id: Uuid,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        unit: Option<String>,
        /// Index into the deployment's variants.
        v: usize,
        /// Probability of this variant under the logging distribution.
        p: f64,
        /// Policy version (updates applied) when decided.
        pv: u64,
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        hold: bool,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        x: Vec<f64>,
        /// Probabilities of every serving variant (arm order), for off-policy evaluation.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        probs: Vec<f64>,
        /// The context as sent, for deployments that declare no features (so candidates that
        /// use it can be evaluated offline later).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ctx: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pred: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        shadow: Option<serde_json::Value>,
    },
    Reward {
        seq: u64,
        ts: i64,
        id: Uuid,
        r: f64,
        /// True when the window closed and the default reward was applied.
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        default: bool,
    },
    /// A variant paused by a guardrail (or a canary rolled back).
    Pause { seq: u64, ts: i64, v: usize, why: String },
    /// A canary moved to a step (index into `canary.steps`).
    CanaryStep { seq: u64, ts: i64, step: usize },
    /// A model variant's answer to a decision's inputs: the chosen variant's (returned to the
    /// caller) or a shadow's (logged only).
    Output {
        seq: u64,
        ts: i64,
        id: Uuid,
        v: usize,
        shadow: bool,
        pred: serde_json::Value,
    },
}

impl Event {
    fn seq(&self) -> u64 {
        match self {
            Event::Revision { seq, .. }
            | Event::Decision { seq, .. }
            | Event::Reward { seq, .. }
            | Event::Pause { seq, .. }
            | Event::CanaryStep { seq, .. }
            | Event::Output { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Clone)]
struct Waiting {
    arm: Option<usize>,
    variant: usize,
    x: Vec<f64>,
    ts: i64,
    hold: bool,
    reward: Option<f64>,
}

/// What `decide` answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionOut {
    pub decision_id: String,
    pub deployment: String,
    pub variant: String,
    pub propensity: f64,
    pub policy_version: u64,
    pub revision: i64,
    pub control: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction: Option<serde_json::Value>,
    /// The id the prediction was logged under (prediction logging on): labels refer to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_id: Option<String>,
    /// Set when an output guardrail held the chosen variant's answer back and `variant` is the
    /// fallback: `{"from": variant held back, "violation": {...}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<serde_json::Value>,
}

/// What `feedback` answers for one event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeedbackOut {
    pub decision_id: String,
    /// `false` when the same reward had already been counted (the call changed nothing).
    pub counted: bool,
}

/// One item of a batch of rewards.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RewardIn {
    pub decision_id: String,
    pub reward: f64,
}

pub(crate) struct Inner {
    pub(crate) spec: DeploymentSpec,
    pub(crate) revision: i64,
    pub(crate) policy: PolicyState,
    rng: ChaCha8Rng,
    waiting: HashMap<Uuid, Waiting>,
    expiry: VecDeque<(i64, Uuid)>,
    pub(crate) counters: Counters,
    pub(crate) paused: Vec<bool>,
    pub(crate) canary_step: usize,
    seq: u64,
    /// Changes a guardrail or canary made, to record in the change log by the caller.
    pub(crate) notices: Vec<(String, serde_json::Value)>,
}

pub(crate) struct Replayed {
    inner: Inner,
    good_len: u64,
    last_rev: Option<i64>,
    events: usize,
    path: PathBuf,
}

/// What closing attribution windows did.
#[derive(Debug, Default)]
pub struct ClosedWindows {
    pub closed: usize,
    /// Default rewards applied: (decision id, reward).
    pub defaults: Vec<(String, f64)>,
    /// Guardrail pauses or canary moves the default rewards caused.
    pub notices: Vec<(String, serde_json::Value)>,
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

fn lock_err() -> DeploymentError {
    DeploymentError::Log("internal lock poisoned; restart keel".into())
}

/// Whether a new revision can keep the learned state of the previous one.
fn compatible(old: &DeploymentSpec, new: &DeploymentSpec) -> bool {
    let names = |s: &DeploymentSpec| {
        s.variants
            .iter()
            .map(|v| (v.name.clone(), v.shadow))
            .collect::<Vec<_>>()
    };
    names(old) == names(new)
        && std::mem::discriminant(&old.policy) == std::mem::discriminant(&new.policy)
        && old.context == new.context
}

impl Inner {
    fn new(spec: DeploymentSpec, revision: i64) -> Result<Inner> {
        let arms = spec.arms().len();
        let policy = PolicyState::new(spec.policy.clone(), arms, spec.feature_width())?;
        let n = spec.variants.len();
        Ok(Inner {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            counters: Counters::new(n, spec.report_bucket_seconds),
            paused: vec![false; n],
            canary_step: 0,
            policy,
            spec,
            revision,
            waiting: HashMap::new(),
            expiry: VecDeque::new(),
            seq: 0,
            notices: Vec::new(),
        })
    }

    fn window_ms(&self) -> i64 {
        (self.spec.reward.window_seconds as i64).saturating_mul(1000)
    }

    /// Applies an event to the state (live and on replay alike).
    fn apply(&mut self, event: &Event) -> Result<()> {
        self.seq = self.seq.max(event.seq());
        match event {
            Event::Revision { .. } => {}
            Event::Decision { ts, id, v, hold, x, .. } => {
                let arm = self.spec.arms().iter().position(|a| a == v);
                self.waiting.insert(
                    *id,
                    Waiting {
                        arm,
                        variant: *v,
                        x: x.clone(),
                        ts: *ts,
                        hold: *hold,
                        reward: None,
                    },
                );
                self.expiry.push_back((ts + self.window_ms(), *id));
                self.counters.exposure(*v, *hold, *ts);
            }
            Event::Reward { id, r, default, .. } => {
                let Some(w) = self.waiting.get_mut(id) else {
                    return Ok(());
                };
                w.reward = Some(*r);
                let (arm, variant, hold) = (w.arm, w.variant, w.hold);
                let x = if w.x.is_empty() { None } else { Some(w.x.clone()) };
                if let Some(arm) = arm {
                    self.policy.update(arm, x.as_deref(), *r)?;
                }
                self.counters.reward(variant, hold, *r, *default);
                if *default {
                    self.waiting.remove(id);
                }
            }
            Event::Pause { v, .. } => {
                if let Some(p) = self.paused.get_mut(*v) {
                    *p = true;
                }
            }
            Event::CanaryStep { step, .. } => self.canary_step = *step,
            Event::Output { .. } => {}
        }
        Ok(())
    }

    /// Distribution over arms after pauses and the canary ramp.
    fn arm_distribution(&mut self, x: Option<&[f64]>) -> Result<Vec<f64>> {
        let arms = self.spec.arms();
        let mut probs = match (&self.spec.canary, &self.spec.policy) {
            (Some(c), PolicyConfig::FixedWeights { .. }) => {
                let canary = self.spec.variant_index(&c.variant).unwrap_or(0);
                let share = if self.paused[canary] {
                    0.0
                } else {
                    c.steps[self.canary_step.min(c.steps.len() - 1)]
                };
                arms.iter()
                    .map(|v| if *v == canary { share } else { 1.0 - share })
                    .collect()
            }
            _ => self.policy.probabilities(x)?,
        };
        let any_paused = arms.iter().any(|v| self.paused[*v]);
        if any_paused {
            for (i, v) in arms.iter().enumerate() {
                if self.paused[*v] {
                    probs[i] = 0.0;
                }
            }
            let total: f64 = probs.iter().sum();
            if total > 0.0 {
                probs.iter_mut().for_each(|p| *p /= total);
            } else {
                // Everything paused: fall back to the baseline (control, else first variant).
                let base = self.baseline_arm();
                probs
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, p)| *p = if i == base { 1.0 } else { 0.0 });
            }
        }
        Ok(probs)
    }

    fn baseline_variant(&self) -> usize {
        let named = self
            .spec
            .guardrails
            .as_ref()
            .and_then(|g| g.baseline.as_ref())
            .or(self.spec.control.as_ref().map(|c| &c.variant))
            .and_then(|n| self.spec.variant_index(n));
        named.unwrap_or_else(|| self.spec.arms().first().copied().unwrap_or(0))
    }

    fn baseline_arm(&self) -> usize {
        let base = self.baseline_variant();
        self.spec.arms().iter().position(|v| *v == base).unwrap_or(0)
    }

    fn push(&mut self, wal: &Wal, event: &Event) -> Result<u64> {
        let mut line = serde_json::to_vec(event).map_err(|e| DeploymentError::Log(format!("encoding event: {e}")))?;
        line.push(b'\n');
        let mut pending = wal.pending().lock().map_err(|_| lock_err())?;
        pending.bytes.extend_from_slice(&line);
        pending.last_seq = event.seq();
        Ok(event.seq())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Guardrails and canary progression after a reward: emits pause / step events.
    fn check_guardrails(&mut self, wal: &Wal, variant: usize, now: i64) -> Result<()> {
        let (min, alpha) = match (&self.spec.guardrails, &self.spec.canary) {
            (Some(g), _) => (g.min_rewards, g.alpha),
            (None, Some(_)) => (500, 0.01),
            (None, None) => return Ok(()),
        };
        let base = self.baseline_variant();
        if variant != base && !self.paused[variant] {
            let worse = self.counters.significantly_worse(variant, base, min, alpha);
            if let Some(p_value) = worse {
                let why = format!(
                    "mean reward of '{}' is below '{}' (one-sided p = {p_value:.2e} < {alpha})",
                    self.spec.variants[variant].name, self.spec.variants[base].name
                );
                let seq = self.next_seq();
                let event = Event::Pause {
                    seq,
                    ts: now,
                    v: variant,
                    why: why.clone(),
                };
                self.apply(&event)?;
                self.push(wal, &event)?;
                let kind = if self.spec.canary.is_some() {
                    "canary.rollback"
                } else {
                    "experiment.pause"
                };
                self.notices.push((
                    kind.to_string(),
                    serde_json::json!({"variant": self.spec.variants[variant].name, "why": why, "revision": self.revision}),
                ));
                return Ok(());
            }
        }
        if let Some(c) = self.spec.canary.clone() {
            let canary = self.spec.variant_index(&c.variant).unwrap_or(0);
            if variant == canary
                && !self.paused[canary]
                && self.canary_step + 1 < c.steps.len()
                && self.counters.step_rewards(canary) >= c.min_rewards_per_step
            {
                let step = self.canary_step + 1;
                let seq = self.next_seq();
                let event = Event::CanaryStep { seq, ts: now, step };
                self.apply(&event)?;
                self.push(wal, &event)?;
                self.counters.reset_step(canary);
                self.notices.push((
                    "canary.step".to_string(),
                    serde_json::json!({"variant": c.variant, "share": c.steps[step], "revision": self.revision}),
                ));
            }
        }
        Ok(())
    }
}

impl Deployment {
    /// Rebuilds a deployment's state from its log without writing anything (the CLI report
    /// uses this while a server may be appending to the same log).
    pub(crate) fn replay(name: &str, spec: &DeploymentSpec, revision: i64, dir: &Path) -> Result<Replayed> {
        let path = dir.join(name).join("events.jsonl");
        let (events, good_len) = read_events(&path)?;
        // A revision that could not keep the learned state reset it; replay does the same.
        let mut inner = Inner::new(spec.clone(), revision)?;
        let mut last_rev = None;
        for raw in &events {
            let event: Event = serde_json::from_value(raw.clone())
                .map_err(|e| DeploymentError::Log(format!("{}: unreadable event {raw}: {e}", path.display())))?;
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
            inner.apply(&event)?;
        }
        Ok(Replayed {
            inner,
            good_len,
            last_rev,
            events: events.len(),
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
            inner.push(&experiment.wal, &event)?;
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
    ) -> Result<(DecisionOut, Vec<(String, serde_json::Value)>)> {
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
            inner.apply(&event)?;
            inner.push(&self.wal, &event)?;
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
            };
            (out, seq, std::mem::take(&mut inner.notices))
        };
        self.wal.notify();
        self.wal.wait_durable(seq).await?;
        Ok((out, notices))
    }

    /// Records rewards; each is idempotent (the same reward again counts once).
    pub async fn feedback(
        &self,
        items: &[RewardIn],
    ) -> Result<(Vec<Result<FeedbackOut>>, Vec<(String, serde_json::Value)>)> {
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
        inner.apply(&event)?;
        inner.push(&self.wal, &event)?;
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
                        inner.apply(&event)?;
                        inner.push(&self.wal, &event)?;
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
            inner.push(&self.wal, &event)?;
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
