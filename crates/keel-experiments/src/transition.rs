//! What a new revision does to the learned state: kept as it is (same variants, context and
//! features), carried over to a changed set of variants (each variant that continues keeps
//! what it learned, by name; a shared model is kept whole, so a new variant starts from what
//! variants with similar features taught it), or started afresh (the context, the variants'
//! features or the kind of policy changed). Applied when a revision starts and again, at the
//! same place, when the log is replayed (`Event::Spec`).

use crate::Result;
use crate::spec::DeploymentSpec;
use crate::state::{Inner, compatible};
use crate::waiting::{NewWaiting, WaitingSet};

/// Whether a revision that changes the variants can keep the learned state of the previous
/// one: the same kind of policy (shared or not), context and variants' features, and no
/// canary or fixed weights (their state is the ramp and the per-variant weights).
pub(crate) fn carryable(old: &DeploymentSpec, new: &DeploymentSpec) -> bool {
    use keel_bandit::PolicyConfig::FixedWeights;
    std::mem::discriminant(&old.policy) == std::mem::discriminant(&new.policy)
        && old.policy.is_shared() == new.policy.is_shared()
        && !matches!(new.policy, FixedWeights { .. })
        && old.context == new.context
        && old.action_features == new.action_features
        && old.canary.is_none()
        && new.canary.is_none()
}

impl Inner {
    /// Moves the state to the spec `to`: kept, carried or afresh (see the module doc). The
    /// sequence number, revision and random stream continue.
    pub(crate) fn transition(&mut self, to: &DeploymentSpec) -> Result<()> {
        if compatible(&self.spec, to) {
            self.spec = to.clone();
            return Ok(());
        }
        let (seq, revision, rng) = (self.seq, self.revision, self.rng.clone());
        let mut next = if carryable(&self.spec, to) {
            self.carried(to)?
        } else {
            Inner::new(to.clone(), revision)?
        };
        next.seq = seq;
        next.revision = revision;
        next.rng = rng;
        *self = next;
        Ok(())
    }

    /// A new state for `to` that keeps this one's learning: the policy carried by variant
    /// name, the pauses of the variants that continue, and the decisions still waiting for a
    /// reward whose variant continues (their reward still teaches the policy; those of a
    /// removed variant are forgotten, like every waiting decision when the state starts
    /// afresh). The report's counters start afresh: they compare the variants of one revision.
    fn carried(&self, to: &DeploymentSpec) -> Result<Inner> {
        let (old_arms, new_arms) = (self.spec.arms(), to.arms());
        let name_of = |v: usize| self.spec.variants[v].name.as_str();
        let keep: Vec<Option<usize>> = new_arms
            .iter()
            .map(|v| old_arms.iter().position(|o| name_of(*o) == to.variants[*v].name))
            .collect();
        let policy = self.policy.carry(to.policy.clone(), &keep, to.action_feature_rows()?)?;
        let mut next = Inner::new(to.clone(), self.revision)?;
        next.policy = policy;
        // old variant index -> new one
        let map: Vec<Option<usize>> = self.spec.variants.iter().map(|v| to.variant_index(&v.name)).collect();
        for (old, new) in map.iter().enumerate() {
            if let Some(new) = new {
                next.paused[*new] = self.paused[old];
            }
        }
        for (w, x, passed) in self.waiting.iter() {
            let variant = match w.variant() {
                None => None,
                Some(old) => match map.get(old).copied().flatten() {
                    Some(new) => Some(new),
                    None => continue,
                },
            };
            let arm = variant.and_then(|v| new_arms.iter().position(|a| *a == v));
            let moved = NewWaiting {
                ts: w.ts,
                variant,
                arm,
                hold: w.hold,
                reward: w.reward(),
            };
            let id = WaitingSet::id_of(w);
            if passed {
                next.waiting.insert_passed(id, moved, x);
            } else {
                next.waiting.insert(id, moved, x);
            }
            // The metrics it has stay received (a retry after the revision is a duplicate).
            for (name, value) in self.waiting.metrics_of(&id) {
                next.waiting.set_metric(&id, name, value);
            }
        }
        Ok(next)
    }
}
