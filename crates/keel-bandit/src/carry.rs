//! Policies over actions that carry features, and the learned state kept across a change of
//! the action set (an action added or removed by a new revision of a deployment).

use crate::config::PolicyConfig;
use crate::error::{BanditError, Result};
use crate::linear::{LinearModel, spd_inverse};
use crate::logistic::LogisticModel;
use crate::state::{ArmStats, PolicyState};

impl PolicyState {
    /// A fresh policy over actions described by `action_features` (one row of numbers per
    /// action, every row as wide). A policy with `"shared": true` learns one model over context x
    /// action features; any other policy ignores the features (one model or count per action).
    pub fn with_action_features(
        config: PolicyConfig,
        features: usize,
        action_features: Vec<Vec<f64>>,
    ) -> Result<PolicyState> {
        let config = config.resolved();
        let actions = action_features.len();
        if config.is_shared() {
            let width = crate::shared::check_action_features(&action_features, actions)?;
            let d = crate::shared::dim(features, width);
            if d.saturating_mul(d) > crate::MAX_MATRIX_ENTRIES {
                return Err(BanditError::InvalidConfig(vec![format!(
                    "{features} context features times {width} action features need more than {} matrix entries; use fewer features",
                    crate::MAX_MATRIX_ENTRIES
                )]));
            }
            PolicyState::build(config, actions, features, Some(action_features))
        } else {
            PolicyState::new(config, actions, features)
        }
    }

    /// Every action's features, for a policy that shares its model across actions.
    pub fn action_features(&self) -> Option<&[Vec<f64>]> {
        self.action_features.as_deref()
    }

    /// The same learner over a new set of actions, keeping what was learned: `keep[i]` is the
    /// action of this policy that action `i` of the new one continues (`None`: a new action).
    ///
    /// A shared model is kept whole (a new action scores from its features at once); per-action
    /// models and counts are kept for the actions that continue and start from the prior for new
    /// ones. `config` may change the learner's settings (not its type, context or whether it
    /// shares its model); `action_features` are the new actions' (shared policies only). The
    /// policy version (updates applied) carries on.
    pub fn carry(
        &self,
        config: PolicyConfig,
        keep: &[Option<usize>],
        action_features: Option<Vec<Vec<f64>>>,
    ) -> Result<PolicyState> {
        let config = config.resolved();
        if std::mem::discriminant(&config) != std::mem::discriminant(&self.config)
            || config.is_shared() != self.config.is_shared()
        {
            return Err(BanditError::InvalidConfig(vec![format!(
                "the learned state of a {}{} policy cannot continue as a {}{} one; start a new state",
                if self.config.is_shared() { "shared " } else { "" },
                self.config.name(),
                if config.is_shared() { "shared " } else { "" },
                config.name()
            )]));
        }
        if let Some(old) = keep.iter().flatten().find(|o| **o >= self.actions) {
            return Err(BanditError::ActionOutOfRange {
                action: *old,
                actions: self.actions,
            });
        }
        let mut next = match action_features {
            Some(af) if config.is_shared() => PolicyState::with_action_features(config, self.features, af)?,
            _ => PolicyState::new(config, keep.len(), self.features)?,
        };
        next.updates = self.updates;
        next.arms = keep
            .iter()
            .map(|o| o.map_or_else(ArmStats::default, |o| self.arms[o].clone()))
            .collect();
        let shared = self.config.is_shared();
        // (model of the new policy, model of this one) pairs to copy.
        let pairs: Vec<(usize, usize)> = if shared {
            vec![(0, 0)]
        } else {
            keep.iter().enumerate().filter_map(|(i, o)| o.map(|o| (i, o))).collect()
        };
        if let (Some(to), Some(from)) = (next.linear.as_mut(), self.linear.as_ref()) {
            for &(i, o) in &pairs {
                copy_linear(to, i, from, o)?;
            }
        }
        if let (Some(to), Some(from)) = (next.logistic.as_mut(), self.logistic.as_ref()) {
            for &(i, o) in &pairs {
                copy_logistic(to, i, from, o)?;
            }
        }
        next.refresh_sampled(true)?;
        Ok(next)
    }
}

fn copy_linear(to: &mut LinearModel, i: usize, from: &LinearModel, o: usize) -> Result<()> {
    if to.dim != from.dim {
        return Err(dims(from.dim, to.dim));
    }
    let (d, n) = (to.dim, to.dim * to.dim);
    to.a_inv[i * n..(i + 1) * n].copy_from_slice(&from.a_inv[o * n..(o + 1) * n]);
    to.b[i * d..(i + 1) * d].copy_from_slice(&from.b[o * d..(o + 1) * d]);
    to.theta[i * d..(i + 1) * d].copy_from_slice(&from.theta[o * d..(o + 1) * d]);
    if let Some(a) = to.a.as_mut() {
        // Discounting now: its precision, kept or recovered from the inverse.
        let block = match &from.a {
            Some(fa) => fa[o * n..(o + 1) * n].to_vec(),
            None => spd_inverse(&from.a_inv[o * n..(o + 1) * n], d)?,
        };
        a[i * n..(i + 1) * n].copy_from_slice(&block);
    }
    Ok(())
}

fn copy_logistic(to: &mut LogisticModel, i: usize, from: &LogisticModel, o: usize) -> Result<()> {
    if to.dim != from.dim {
        return Err(dims(from.dim, to.dim));
    }
    let (d, n) = (to.dim, to.dim * to.dim);
    to.cov[i * n..(i + 1) * n].copy_from_slice(&from.cov[o * n..(o + 1) * n]);
    to.mean[i * d..(i + 1) * d].copy_from_slice(&from.mean[o * d..(o + 1) * d]);
    if let Some(p) = to.precision.as_mut() {
        let block = match &from.precision {
            Some(fp) => fp[o * n..(o + 1) * n].to_vec(),
            None => spd_inverse(&from.cov[o * n..(o + 1) * n], d)?,
        };
        p[i * n..(i + 1) * n].copy_from_slice(&block);
    }
    Ok(())
}

fn dims(from: usize, to: usize) -> BanditError {
    BanditError::InvalidConfig(vec![format!(
        "the learned model has {from} inputs and the new one {to}: the context or the actions' features changed; keep them to keep the learned state"
    )])
}
