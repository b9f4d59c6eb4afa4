//! The in-memory state of one running deployment (policy, waiting decisions, counters,
//! pauses, canary step), changed only by applying log events, live and on replay alike.

use keel_bandit::{PolicyConfig, PolicyState};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::Result;
use crate::event::Event;
use crate::notice::Notice;
use crate::spec::DeploymentSpec;
use crate::stats::Counters;
use crate::waiting::{NewWaiting, WaitingSet};

pub(crate) struct Inner {
    pub(crate) spec: DeploymentSpec,
    pub(crate) revision: i64,
    pub(crate) policy: PolicyState,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) waiting: WaitingSet,
    pub(crate) counters: Counters,
    pub(crate) paused: Vec<bool>,
    pub(crate) canary_step: usize,
    pub(crate) seq: u64,
    /// Changes a guardrail or canary made, to record in the change log by the caller.
    pub(crate) notices: Vec<Notice>,
}

/// Whether a new revision can keep the learned state of the previous one.
pub(crate) fn compatible(old: &DeploymentSpec, new: &DeploymentSpec) -> bool {
    let names = |s: &DeploymentSpec| {
        s.variants
            .iter()
            .map(|v| (v.name.clone(), v.shadow))
            .collect::<Vec<_>>()
    };
    names(old) == names(new)
        && std::mem::discriminant(&old.policy) == std::mem::discriminant(&new.policy)
        && old.policy.is_shared() == new.policy.is_shared()
        && old.context == new.context
        && old.action_features == new.action_features
        && old
            .variants
            .iter()
            .zip(&new.variants)
            .all(|(a, b)| a.features == b.features)
}

impl Inner {
    pub(crate) fn new(spec: DeploymentSpec, revision: i64) -> Result<Inner> {
        let policy = spec.new_policy()?;
        let n = spec.variants.len();
        Ok(Inner {
            rng: ChaCha8Rng::seed_from_u64(spec.seed),
            counters: Counters::new(n, spec.report_bucket_seconds),
            paused: vec![false; n],
            canary_step: 0,
            policy,
            spec,
            revision,
            waiting: WaitingSet::default(),
            seq: 0,
            notices: Vec::new(),
        })
    }

    pub(crate) fn window_ms(&self) -> i64 {
        (self.spec.reward.window_seconds as i64).saturating_mul(1000)
    }

    /// Applies an event to the state (live and on replay alike).
    pub(crate) fn apply(&mut self, event: &Event) -> Result<()> {
        self.seq = self.seq.max(event.seq());
        match event {
            Event::Revision { .. } => {}
            Event::Decision { ts, id, v, hold, x, .. } => {
                let arm = v.and_then(|v| self.spec.arms().iter().position(|a| *a == v));
                let new = NewWaiting {
                    ts: *ts,
                    variant: *v,
                    arm,
                    hold: *hold,
                    reward: None,
                };
                self.waiting.insert(*id, new, x);
                self.counters.exposure(*v, *hold, *ts);
            }
            Event::Reward { id, r, default, .. } => {
                // The context is needed once, for this update.
                let Some((w, x)) = self.waiting.reward(id, *r) else {
                    return Ok(());
                };
                if let Some(arm) = w.arm() {
                    // The policy learns the decision metric minus the variant's cost (none
                    // declared: the reward as it is).
                    let cost = w.variant().and_then(|v| self.spec.variants.get(v)).and_then(|v| v.cost);
                    let learned = cost.map_or(*r, |c| *r - c);
                    self.policy.update(arm, (!x.is_empty()).then_some(x), learned)?;
                }
                self.counters.reward(w.variant(), w.hold, *r, *default);
                if *default {
                    self.waiting.remove(id);
                }
            }
            Event::Metrics { id, m, .. } => {
                let Some(w) = self.waiting.get(id).copied() else {
                    return Ok(());
                };
                for (name, value) in m {
                    if self.waiting.set_metric(id, name, *value) {
                        self.counters.metric(name, w.variant(), w.hold, *value);
                    }
                }
            }
            Event::Pause { v, .. } => {
                if let Some(p) = self.paused.get_mut(*v) {
                    *p = true;
                }
            }
            Event::CanaryStep { step, .. } => self.canary_step = *step,
            Event::Spec { spec, .. } => self.transition(spec)?,
            Event::Output { .. } => {}
        }
        Ok(())
    }

    /// Distribution over arms after pauses and the canary ramp; a policy that learns decides
    /// among the `eligible` arms only (a mask over the arms) when there is such a set.
    pub(crate) fn arm_distribution(&mut self, x: Option<&[f64]>, eligible: Option<&[bool]>) -> Result<Vec<f64>> {
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
            _ => self.policy.probabilities_among(x, eligible)?,
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

    pub(crate) fn baseline_variant(&self) -> usize {
        let named = self
            .spec
            .guardrails
            .as_ref()
            .and_then(|g| g.baseline.as_ref())
            .map(String::as_str)
            .or(self.spec.control.as_ref().and_then(|c| c.variant_name()))
            .and_then(|n| self.spec.variant_index(n));
        named.unwrap_or_else(|| self.spec.arms().first().copied().unwrap_or(0))
    }

    pub(crate) fn baseline_arm(&self) -> usize {
        let base = self.baseline_variant();
        self.spec.arms().iter().position(|v| *v == base).unwrap_or(0)
    }

    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The same on a replicated (PostgreSQL) log: a pause or a canary step follows from the
    /// rewards applied in the global order, so every replica derives it at the same place and
    /// none logs it; the replica whose reward caused it (`mine`) reports the notice.
    pub(crate) fn derive_guardrails(&mut self, variant: usize, ts: i64, mine: bool) -> Result<()> {
        let found = self.guardrail_move(variant, ts);
        self.derive_move(found, variant, mine)
    }

    /// Applies a pause or canary step derived from the log (not logged; see above).
    pub(crate) fn derive_move(&mut self, found: Option<(Event, Notice)>, variant: usize, mine: bool) -> Result<()> {
        let Some((event, notice)) = found else {
            return Ok(());
        };
        let seq = self.seq;
        self.apply(&event)?;
        self.seq = seq;
        if let Event::CanaryStep { .. } = event {
            self.counters.reset_step(variant);
        }
        if mine {
            self.notices.push(notice);
        }
        Ok(())
    }

    /// The pause or canary step a reward for `variant` calls for, if any (its sequence number
    /// left at 0), with its notice.
    pub(crate) fn guardrail_move(&mut self, variant: usize, now: i64) -> Option<(Event, Notice)> {
        let (min, alpha) = match (&self.spec.guardrails, &self.spec.canary) {
            (Some(g), _) => (g.min_rewards, g.alpha),
            (None, Some(_)) => (500, 0.01),
            (None, None) => return None,
        };
        let base = self.baseline_variant();
        if variant != base && !self.paused[variant] {
            let worse = self.counters.significantly_worse(variant, base, min, alpha);
            if let Some(p_value) = worse {
                let why = format!(
                    "mean reward of '{}' is below '{}' (one-sided p = {p_value:.2e} < {alpha})",
                    self.spec.variants[variant].name, self.spec.variants[base].name
                );
                let event = Event::Pause {
                    seq: 0,
                    ts: now,
                    v: variant,
                    why: why.clone(),
                };
                let (variant, revision) = (self.spec.variants[variant].name.clone(), self.revision);
                let notice = if self.spec.canary.is_some() {
                    Notice::CanaryRolledBack { variant, why, revision }
                } else {
                    Notice::Paused { variant, why, revision }
                };
                return Some((event, notice));
            }
        }
        let c = self.spec.canary.as_ref()?;
        let canary = self.spec.variant_index(&c.variant).unwrap_or(0);
        if variant == canary
            && !self.paused[canary]
            && self.canary_step + 1 < c.steps.len()
            && self.counters.step_rewards(canary) >= c.min_rewards_per_step
        {
            let step = self.canary_step + 1;
            let event = Event::CanaryStep { seq: 0, ts: now, step };
            let notice = Notice::CanaryStepped {
                variant: c.variant.clone(),
                share: c.steps[step],
                revision: self.revision,
            };
            return Some((event, notice));
        }
        None
    }
}

/// Restricts a distribution over `arms` to the eligible variants (`mask`, by variant index)
/// and renormalises it; uniform over the eligible arms when it gave them nothing.
pub(crate) fn restrict(probs: &mut [f64], arms: &[usize], mask: &[bool]) {
    let eligible = |i: usize| mask.get(arms[i]).copied().unwrap_or(false);
    for (i, p) in probs.iter_mut().enumerate() {
        if !eligible(i) {
            *p = 0.0;
        }
    }
    let total: f64 = probs.iter().sum();
    if total > 0.0 {
        probs.iter_mut().for_each(|p| *p /= total);
    } else {
        let k = (0..probs.len()).filter(|i| eligible(*i)).count().max(1) as f64;
        for (i, p) in probs.iter_mut().enumerate() {
            *p = if eligible(i) { 1.0 / k } else { 0.0 };
        }
    }
}

/// What applying one event of the global log did.
pub(crate) enum Applied {
    Done,
    /// A `Revision` newer than the one this replica runs: it is not applied (the replica
    /// reloads the deployment from the store).
    NewerRevision(i64),
}

/// Applies one event of the global log to the state, as every replica does at the same place:
/// a `Revision` resets the state when it says so (once per revision, whichever replica
/// started it); a reward moves guardrails and canaries (derived, not logged: see
/// [`Inner::derive_guardrails`]); an event naming a variant the running spec does not have
/// (a replica still on an older revision) is skipped.
pub(crate) fn apply_replicated(
    inner: &mut Inner,
    event: &Event,
    mine: bool,
    last_rev: &mut Option<i64>,
) -> Result<Applied> {
    let n = inner.spec.variants.len();
    match event {
        Event::Revision { rev, reset, .. } => {
            if *rev > inner.revision {
                return Ok(Applied::NewerRevision(*rev));
            }
            if *last_rev != Some(*rev) {
                *last_rev = Some(*rev);
                if *reset {
                    let (seq, spec, revision) = (inner.seq, inner.spec.clone(), inner.revision);
                    *inner = Inner::new(spec, revision)?;
                    inner.seq = seq;
                }
            }
        }
        Event::Decision { v: Some(v), .. } | Event::Pause { v, .. } if *v >= n => {
            tracing::warn!(
                seq = event.seq(),
                variant = v,
                "an event of the log names a variant this revision does not have; skipped"
            );
        }
        Event::Reward { id, ts, .. } => {
            let variant = inner
                .waiting
                .get(id)
                .filter(|w| w.reward().is_none())
                .map(|w| w.variant());
            inner.apply(event)?;
            if let Some(Some(variant)) = variant {
                inner.derive_guardrails(variant, *ts, mine)?;
            }
        }
        Event::Metrics { id, ts, .. } => {
            let variant = inner.waiting.get(id).and_then(|w| w.variant());
            inner.apply(event)?;
            if let Some(variant) = variant {
                let found = inner.metric_guardrail_move(variant, *ts);
                inner.derive_move(found, variant, mine)?;
            }
        }
        _ => inner.apply(event)?,
    }
    inner.seq = inner.seq.max(event.seq());
    Ok(Applied::Done)
}
