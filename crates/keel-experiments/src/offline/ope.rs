//! A deployment's decision log as logged bandit feedback, and a candidate policy's estimated
//! value on it (or on any logged bandit feedback, such as an Open Bandit Dataset file).
//!
//! The candidate is a policy definition (the `policy` of a deployment). It is warmed up on the
//! first part of the log (replaying the logged actions and rewards), then its action
//! probabilities on the remaining rounds are evaluated with DM, IPW, SNIPW, DR, SNDR, Switch-DR
//! and DR-OS, each with its diagnostics and verdict (`keel_ope::Diagnostics`). The
//! reward model of DM/DR/SNDR is the per-action (and per-position) mean reward of the warm-up
//! part, shrunk to the overall mean. Decisions made among an eligible set (`"eligible"` in
//! decide) are evaluated over the same set: the candidate's distribution is restricted to it
//! and renormalised, as decide does, and the logged propensity is already over it.
//!
//! A round's reward is the decision metric by default; [`OpeOutcome`] picks the decision
//! metric net of the logged variant's cost (what a deployment with costs maximises) or another
//! declared metric (the rounds are then the decisions that received a value of it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use keel_bandit::{PolicyConfig, PolicyState};
use keel_ope::{ActionDist, Estimate, LoggedBandit, Settings, evaluate_with};

use super::source::LogSource;
use super::{OfflineError, Result};
use crate::spec::{MetricKind, RewardKind};
use crate::{DeploymentSpec, Event};

/// The folder of deployment `name`'s decision log (its segments, active file and snapshots)
/// under keel's home folder.
pub fn decision_log_dir(home: &Path, name: &str) -> PathBuf {
    home.join("experiments").join(name)
}

/// Which outcome of a logged decision an offline reading of the log takes: OPE's rewards, and
/// the values the segment breakdown and CUPED compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OpeOutcome {
    /// The decision metric (the `reward` block), as the policy sees it before costs.
    #[default]
    Reward,
    /// The decision metric minus the logged variant's cost (the spec's costs): the value a
    /// policy of a deployment that declares costs maximises.
    Net,
    /// Another declared metric: the rounds are the decisions that received a value of it.
    Metric(String),
}

impl OpeOutcome {
    /// Reads `reward`, `net` or a metric's name (the decision metric's name is `reward`),
    /// checked against `spec`.
    pub fn parse(text: &str, spec: &DeploymentSpec) -> Result<OpeOutcome> {
        match text {
            "reward" => Ok(OpeOutcome::Reward),
            "net" => Ok(OpeOutcome::Net),
            name if name == spec.reward_name() => Ok(OpeOutcome::Reward),
            name if spec.metric(name).is_some() => Ok(OpeOutcome::Metric(name.to_string())),
            other => {
                let mut known = vec!["reward".to_string(), "net".to_string(), spec.reward_name().to_string()];
                known.extend(spec.metrics.iter().map(|m| m.name.clone()));
                known.dedup();
                Err(OfflineError::InvalidArgument {
                    name: "--outcome",
                    reason: format!(
                        "'{}' is not an outcome of this deployment: use one of {}",
                        other.escape_default(),
                        known.join(", ")
                    ),
                })
            }
        }
    }

    /// The outcome `text` names ([`OpeOutcome::parse`]), or the decision metric when none is
    /// named.
    pub fn named(text: Option<&str>, spec: &DeploymentSpec) -> Result<OpeOutcome> {
        text.map_or(Ok(OpeOutcome::Reward), |t| OpeOutcome::parse(t, spec))
    }

    /// How reports name it.
    pub fn label(&self, spec: &DeploymentSpec) -> String {
        match self {
            OpeOutcome::Reward => spec.reward_name().to_string(),
            OpeOutcome::Net => format!("{} minus the variant's cost", spec.reward_name()),
            OpeOutcome::Metric(name) => name.clone(),
        }
    }

    /// The decision `event` gives a value of this outcome, and the value: a reward (before the
    /// variant's cost, for `Net`), or this metric's value in a `Metrics` event.
    pub(crate) fn value_in(&self, event: &Event) -> Option<(uuid::Uuid, f64)> {
        match (self, event) {
            (OpeOutcome::Reward | OpeOutcome::Net, Event::Reward { id, r, .. }) => Some((*id, *r)),
            (OpeOutcome::Metric(name), Event::Metrics { id, m, .. }) => m.get(name).map(|v| (*id, *v)),
            _ => None,
        }
    }

    /// Whether its values are summarised as a rate (binary: Wilson intervals) or a mean.
    pub fn kind(&self, spec: &DeploymentSpec) -> RewardKind {
        match self {
            OpeOutcome::Reward => spec.reward.kind,
            OpeOutcome::Net => RewardKind::Continuous,
            OpeOutcome::Metric(name) => match spec.metric(name).map(|m| m.kind) {
                Some(MetricKind::Binary) => RewardKind::Binary,
                _ => RewardKind::Continuous,
            },
        }
    }
}

/// keel's own decision log (the deployment folder `path`, every segment) as logged bandit
/// feedback: rewarded decisions of the serving variants, with the propensity they were
/// logged with and their encoded context.
pub fn deployment_log(path: &Path, spec: &DeploymentSpec) -> Result<LoggedBandit> {
    deployment_log_of(path, spec, &OpeOutcome::Reward)
}

/// [`deployment_log`] with the rounds' rewards taken as `outcome` says.
pub fn deployment_log_of(path: &Path, spec: &DeploymentSpec, outcome: &OpeOutcome) -> Result<LoggedBandit> {
    logged_bandit(&LogSource::Files(path.to_path_buf()), spec, outcome)
}

/// The log `source` as logged bandit feedback (blocking: see [`LogSource::read`]). Read as a
/// stream: memory holds the rewarded decisions, not the log.
fn logged_bandit(source: &LogSource, spec: &DeploymentSpec, outcome: &OpeOutcome) -> Result<LoggedBandit> {
    let mut scan = LogScan::new(spec, outcome.clone());
    source.read(|event| {
        scan.event(event);
        Ok(())
    })?;
    scan.finish(&source.location())
}

/// Deployment `name`'s decision log as logged bandit feedback, wherever it lives: in
/// PostgreSQL when `store` is a PostgreSQL store (the log replicas share), else in the
/// deployment's folder under `home` (see [`deployment_log`]); archived parts included.
pub async fn deployment_log_in(
    store: &keel_store::Store,
    home: &Path,
    name: &str,
    spec: &DeploymentSpec,
    outcome: &OpeOutcome,
) -> Result<LoggedBandit> {
    let source = LogSource::of(store, &home.join("experiments"), name);
    let (spec, outcome) = (spec.clone(), outcome.clone());
    tokio::task::spawn_blocking(move || logged_bandit(&source, &spec, &outcome))
        .await
        .map_err(|e| crate::DeploymentError::Log(format!("reading the decision log stopped: {e}")))?
}

/// arm, propensity, context, eligible arms (empty: all)
type Logged = (usize, f64, Vec<f64>, Vec<usize>);

/// A log read in order into logged bandit feedback: rewarded decisions of the serving variants,
/// each under the variants of the spec it was logged with, mapped to `spec`'s arms by name.
struct LogScan<'a> {
    spec: &'a DeploymentSpec,
    arms: Vec<usize>,
    /// A variant of the spec in force -> the arm of `spec` of the same name.
    to_arm: Vec<Option<usize>>,
    /// Arms that existed when the decision was made; empty: all of `spec`'s.
    present: Vec<usize>,
    decisions: HashMap<uuid::Uuid, Logged>,
    /// The decision with its reward.
    rounds: Vec<(f64, Logged)>,
    outcome: OpeOutcome,
    /// Per arm: its variant's cost today (for [`OpeOutcome::Net`]).
    costs: Vec<f64>,
}

impl<'a> LogScan<'a> {
    fn new(spec: &'a DeploymentSpec, outcome: OpeOutcome) -> LogScan<'a> {
        let arms = spec.arms();
        let costs = arms
            .iter()
            .map(|v| spec.variants.get(*v).and_then(|v| v.cost).unwrap_or(0.0))
            .collect();
        let mut scan = LogScan {
            spec,
            outcome,
            costs,
            arms,
            to_arm: Vec::new(),
            present: Vec::new(),
            decisions: HashMap::new(),
            rounds: Vec::new(),
        };
        // Logs without `Spec` events were written under one set of variants: `spec`'s.
        scan.to_arm = scan.mapping(spec);
        scan
    }

    fn mapping(&self, then: &DeploymentSpec) -> Vec<Option<usize>> {
        then.variants
            .iter()
            .map(|v| {
                self.spec
                    .variant_index(&v.name)
                    .and_then(|i| self.arms.iter().position(|a| *a == i))
                    .filter(|_| !v.shadow)
            })
            .collect()
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Spec { spec: then, .. } => {
                self.to_arm = self.mapping(&then);
                let mut now: Vec<usize> = then.arms().iter().filter_map(|v| self.to_arm[*v]).collect();
                now.sort_unstable();
                // A decision made while some of today's variants did not exist was made among
                // the others: that is its eligible set.
                self.present = if now.len() == self.arms.len() { Vec::new() } else { now };
            }
            Event::Decision { id, v, p, x, el, .. } => {
                // No-action decisions (a no-action control group) are not the logging
                // policy's: they are left out, like decisions of non-serving variants and of
                // variants `spec` no longer has.
                if let Some(arm) = v.and_then(|v| self.to_arm.get(v).copied().flatten()) {
                    // `el` holds variant indices; OPE works on arms (serving variants).
                    let mut eligible: Vec<usize> = el
                        .iter()
                        .filter_map(|variant| self.to_arm.get(*variant).copied().flatten())
                        .collect();
                    if eligible.is_empty() {
                        eligible.clone_from(&self.present);
                    }
                    self.decisions.insert(id, (arm, p, x, eligible));
                }
            }
            Event::Reward { .. } | Event::Metrics { .. } => {
                if let Some((id, value)) = self.outcome.value_in(&event)
                    && let Some(decision) = self.decisions.remove(&id)
                {
                    let cost = match self.outcome {
                        OpeOutcome::Net => self.costs.get(decision.0).copied().unwrap_or(0.0),
                        _ => 0.0,
                    };
                    self.rounds.push((value - cost, decision));
                }
            }
            Event::Revision { .. } | Event::Pause { .. } | Event::CanaryStep { .. } | Event::Output { .. } => {}
        }
    }

    fn finish(self, path: &Path) -> Result<LoggedBandit> {
        if self.rounds.is_empty() {
            return Err(OfflineError::NoRewardedDecisions {
                path: path.to_path_buf(),
            });
        }
        let n = self.rounds.len();
        let has_context = self.rounds.iter().all(|(_, d)| !d.2.is_empty());
        let has_eligible = self.rounds.iter().any(|(_, d)| !d.3.is_empty());
        let mut actions = Vec::with_capacity(n);
        let mut rewards = Vec::with_capacity(n);
        let mut propensities = Vec::with_capacity(n);
        let mut contexts = Vec::with_capacity(if has_context { n } else { 0 });
        let mut eligible = Vec::with_capacity(if has_eligible { n } else { 0 });
        for (r, (arm, p, x, el)) in self.rounds {
            actions.push(arm);
            rewards.push(r);
            propensities.push(p);
            if has_context {
                contexts.push(x);
            }
            if has_eligible {
                eligible.push(el);
            }
        }
        Ok(LoggedBandit {
            n_actions: self.arms.len(),
            actions,
            rewards,
            propensities,
            positions: None,
            contexts: has_context.then_some(contexts),
            timestamps: None,
            eligible: has_eligible.then_some(eligible),
            action_features: self.spec.action_feature_rows()?,
        })
    }
}

/// A candidate's estimated value on the evaluated part of a log.
#[derive(Debug, Clone)]
pub struct CandidateEstimate {
    /// Rounds evaluated (after the warm-up).
    pub rounds: usize,
    /// Rounds the candidate was warmed up on.
    pub train_rounds: usize,
    /// The logging policy's mean reward on the evaluated rounds.
    pub logged_mean: f64,
    /// DM, IPW, SNIPW, DR, SNDR, Switch-DR and DR-OS, each with its diagnostics.
    pub estimates: Vec<Estimate>,
}

/// Warms `candidate` up on the first `train_fraction` of `log` and estimates its value on the
/// rest, Switch-DR and DR-OS with `settings` (CPU work: call it on a blocking thread for large
/// logs).
pub fn estimate_candidate(
    log: &LoggedBandit,
    candidate: &PolicyConfig,
    train_fraction: f64,
    settings: &Settings,
) -> Result<CandidateEstimate> {
    if !(0.0..1.0).contains(&train_fraction) {
        return Err(OfflineError::InvalidArgument {
            name: "train_fraction",
            reason: format!("{train_fraction} must be in [0, 1)"),
        });
    }
    let n = log.n_rounds();
    let train = ((n as f64) * train_fraction).floor() as usize;
    if n - train < 2 {
        return Err(OfflineError::TooFewRounds {
            rounds: n,
            warm_up: train,
        });
    }
    let features = if candidate.is_contextual() {
        log.contexts.as_ref().and_then(|c| c.first()).map_or(0, Vec::len)
    } else {
        0
    };
    if candidate.is_contextual() && features == 0 {
        return Err(OfflineError::NoContexts);
    }
    candidate.validate(log.n_actions, features)?;
    // A candidate that shares one model across actions learns over the actions' features.
    let mut policy = match (&log.action_features, candidate.is_shared()) {
        (Some(rows), true) => PolicyState::with_action_features(candidate.clone(), features, rows.clone())?,
        (None, true) => return Err(OfflineError::NoActionFeatures),
        (_, false) => PolicyState::new(candidate.clone(), log.n_actions, features)?,
    };
    let ctx = |i: usize| -> Option<&[f64]> {
        if features == 0 {
            None
        } else {
            log.contexts.as_ref().map(|c| c[i].as_slice())
        }
    };
    let len_list = log.len_list().max(1);
    let pos = |i: usize| log.positions.as_ref().map_or(0, |p| p[i]);
    // Reward model: per (action, position) mean over the warm-up rounds, shrunk to the overall mean.
    let mut sums = vec![0.0; log.n_actions * len_list];
    let mut counts = vec![0.0; log.n_actions * len_list];
    for i in 0..train {
        policy.update(log.actions[i], ctx(i), log.rewards[i])?;
        let k = log.actions[i] * len_list + pos(i);
        sums[k] += log.rewards[i];
        counts[k] += 1.0;
    }
    let overall = if train > 0 {
        log.rewards[..train].iter().sum::<f64>() / train as f64
    } else {
        log.mean_reward()
    };
    let q: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| (s + 10.0 * overall) / (c + 10.0))
        .collect();
    let eval: Vec<usize> = (train..n).collect();
    let mut values = Vec::with_capacity(eval.len() * log.n_actions * len_list);
    let mut q_values = Vec::with_capacity(values.capacity());
    for &i in &eval {
        // The candidate decides among the logged eligible set, as it would live.
        let mask: Option<Vec<bool>> = log
            .eligible
            .as_ref()
            .filter(|e| !e[i].is_empty())
            .map(|e| (0..log.n_actions).map(|a| e[i].contains(&a)).collect());
        let p = policy.probabilities_among(ctx(i), mask.as_deref())?;
        for (a, pa) in p.iter().enumerate() {
            for k in 0..len_list {
                values.push(*pa);
                q_values.push(q[a * len_list + k]);
            }
        }
    }
    let m = eval.len();
    let sub = LoggedBandit {
        n_actions: log.n_actions,
        actions: eval.iter().map(|i| log.actions[*i]).collect(),
        rewards: eval.iter().map(|i| log.rewards[*i]).collect(),
        propensities: eval.iter().map(|i| log.propensities[*i]).collect(),
        positions: log.positions.as_ref().map(|p| eval.iter().map(|i| p[*i]).collect()),
        contexts: None,
        timestamps: None,
        eligible: log
            .eligible
            .as_ref()
            .map(|e| eval.iter().map(|i| e[*i].clone()).collect()),
        action_features: None,
    };
    sub.validate()?;
    // The candidate decides among the same eligible variants as the logger did.
    let mut action_dist = ActionDist::new(m, log.n_actions, len_list, values)?;
    action_dist.restrict_to_eligible(&sub)?;
    let q_hat = ActionDist::new(m, log.n_actions, len_list, q_values)?;
    let estimates = evaluate_with(&sub, &action_dist, Some(&q_hat), settings)?;
    Ok(CandidateEstimate {
        rounds: m,
        train_rounds: train,
        logged_mean: sub.mean_reward(),
        estimates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn spec() -> DeploymentSpec {
        DeploymentSpec::from_json(&serde_json::json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "thompson_beta"}
        }))
        .expect("valid spec")
    }

    fn write_log(dir: &Path, events: &[Event]) -> PathBuf {
        let path = decision_log_dir(dir, "d");
        std::fs::create_dir_all(&path).expect("dir");
        let mut f = std::fs::File::create(crate::logfile::active_path(&path)).expect("create");
        for e in events {
            writeln!(f, "{}", serde_json::to_string(e).expect("json")).expect("write");
        }
        path
    }

    fn decision(seq: u64, id: uuid::Uuid, v: usize, p: f64) -> Event {
        Event::Decision {
            seq,
            ts: 0,
            id,
            unit: None,
            run: None,
            el: Vec::new(),
            v: Some(v),
            p,
            pv: 0,
            hold: false,
            x: Vec::new(),
            probs: Vec::new(),
            ctx: None,
            pred: None,
            shadow: None,
        }
    }

    fn reward(seq: u64, id: uuid::Uuid, r: f64) -> Event {
        Event::Reward {
            seq,
            ts: 0,
            id,
            r,
            default: false,
        }
    }

    #[test]
    fn the_log_holds_rewarded_decisions_only_in_reward_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
        let path = write_log(
            dir.path(),
            &[
                decision(1, ids[0], 0, 0.5),
                decision(2, ids[1], 1, 0.25),
                decision(3, ids[2], 0, 0.75),
                reward(4, ids[1], 1.0),
                reward(5, ids[0], 0.0),
                reward(6, uuid::Uuid::new_v4(), 1.0),
            ],
        );
        let log = deployment_log(&path, &spec()).expect("log");
        assert_eq!(log.n_actions, 2);
        assert_eq!(log.actions, [1, 0]);
        assert_eq!(log.rewards, [1.0, 0.0]);
        assert_eq!(log.propensities, [0.25, 0.5]);
        assert!(log.contexts.is_none());

        let empty = write_log(dir.path(), &[decision(1, ids[0], 0, 0.5)]);
        let e = deployment_log(&empty, &spec()).expect_err("nothing rewarded");
        assert_eq!(e.code(), "offline.no_rewarded_decisions");
    }

    #[test]
    fn a_candidate_is_estimated_after_its_warm_up() {
        let n = 40;
        let log = LoggedBandit {
            n_actions: 2,
            actions: (0..n).map(|i| i % 2).collect(),
            rewards: (0..n).map(|i| f64::from(u8::from(i % 2 == 1))).collect(),
            propensities: vec![0.5; n],
            positions: None,
            contexts: None,
            timestamps: None,
            eligible: None,
            action_features: None,
        };
        let candidate: PolicyConfig = serde_json::from_str(r#"{"type": "thompson_beta"}"#).expect("policy");
        let out = estimate_candidate(&log, &candidate, 0.5, &Settings::default()).expect("estimate");
        assert_eq!((out.rounds, out.train_rounds), (20, 20));
        assert!((out.logged_mean - 0.5).abs() < 1e-12);
        assert_eq!(out.estimates.len(), 7);
        // after the warm-up the candidate prefers arm 1, which always pays: worth more than 0.5
        assert!(out.estimates.iter().all(|e| e.value > 0.5), "{:?}", out.estimates);
        let e = estimate_candidate(&log, &candidate, 1.0, &Settings::default()).expect_err("fraction");
        assert_eq!(e.code(), "offline.invalid_argument");
        let e = estimate_candidate(&log, &candidate, 0.99, &Settings::default()).expect_err("too few");
        assert!(
            matches!(
                e,
                OfflineError::TooFewRounds {
                    rounds: 40,
                    warm_up: 39
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn eligible_sets_restrict_the_candidate_like_decide() {
        // Three arms; odd rounds could only get arm 2 (propensity 1), even rounds chose
        // uniformly between arms 0 and 1.
        let n = 40;
        let log = LoggedBandit {
            n_actions: 3,
            actions: (0..n).map(|i| if i % 2 == 1 { 2 } else { (i / 2) % 2 }).collect(),
            rewards: (0..n).map(|i| f64::from(u8::from(i % 3 == 0))).collect(),
            propensities: (0..n).map(|i| if i % 2 == 1 { 1.0 } else { 0.5 }).collect(),
            positions: None,
            contexts: None,
            timestamps: None,
            eligible: Some((0..n).map(|i| if i % 2 == 1 { vec![2] } else { vec![0, 1] }).collect()),
            action_features: None,
        };
        // Uniform over all three arms, restricted to each round's set, is the logger itself:
        // every weight is 1 and IPW is the logged mean.
        let candidate: PolicyConfig =
            serde_json::from_str(r#"{"type": "fixed_weights", "weights": [1, 1, 1]}"#).expect("policy");
        let out = estimate_candidate(&log, &candidate, 0.5, &Settings::default()).expect("estimate");
        let ipw = out.estimates.iter().find(|e| e.name == "ipw").expect("ipw");
        assert!((ipw.value - out.logged_mean).abs() < 1e-12, "{ipw:?}");
        let raw = ipw.diagnostics.raw_weights;
        assert_eq!((raw.max, raw.mean, raw.ess), (1.0, 1.0, 20.0));
        assert_eq!(ipw.diagnostics.rare_mass, 0.0);

        // The decision log keeps the eligible set, as arms.
        let dir = tempfile::tempdir().expect("tmp");
        let ids: Vec<uuid::Uuid> = (0..2).map(|_| uuid::Uuid::new_v4()).collect();
        let mut restricted = decision(1, ids[0], 1, 1.0);
        if let Event::Decision { el, .. } = &mut restricted {
            *el = vec![1];
        }
        let path = write_log(
            dir.path(),
            &[
                restricted,
                decision(2, ids[1], 0, 0.5),
                reward(3, ids[0], 1.0),
                reward(4, ids[1], 0.0),
            ],
        );
        let log = deployment_log(&path, &spec()).expect("log");
        assert_eq!(log.eligible, Some(vec![vec![1], vec![]]));
    }

    fn shared_spec(variants: serde_json::Value) -> DeploymentSpec {
        DeploymentSpec::from_json(&serde_json::json!({
            "variants": variants,
            "policy": {"type": "logistic_thompson", "v": 0.5, "floor": 0.01, "shared": true},
            "context": [{"type": "numeric", "name": "age"}],
            "action_features": [{"type": "numeric", "name": "value"}]
        }))
        .expect("valid spec")
    }

    #[test]
    fn a_shared_candidate_decides_over_the_logged_eligible_set_and_the_variants_of_their_time() {
        // Revision 1 had a and b; revision 2 added c. Every decision of revision 2 was made
        // with one eligible variant (propensity 1), so any candidate that decides among the
        // logged set has weight 1 there; decisions of revision 1 are among a and b.
        let two = shared_spec(serde_json::json!([
            {"name": "a", "features": {"value": 0.2}}, {"name": "b", "features": {"value": 0.8}}
        ]));
        let three = shared_spec(serde_json::json!([
            {"name": "a", "features": {"value": 0.2}}, {"name": "b", "features": {"value": 0.8}},
            {"name": "c", "features": {"value": 0.5}}
        ]));
        let spec_event = |seq, spec: &DeploymentSpec| Event::Spec {
            seq,
            ts: 0,
            spec: Box::new(spec.clone()),
        };
        let mut events = vec![spec_event(1, &two)];
        let mut seq = 1;
        // Two sequence numbers per round: the decision's and its reward's.
        let mut next = || {
            seq += 2;
            seq - 1
        };
        let round = |events: &mut Vec<Event>, v: usize, p: f64, el: Vec<usize>, age: f64, r: f64, seq: u64| {
            let id = uuid::Uuid::new_v4();
            let mut d = decision(seq, id, v, p);
            if let Event::Decision { el: e, x, .. } = &mut d {
                *e = el;
                *x = vec![age];
            }
            events.push(d);
            events.push(reward(seq + 1, id, r));
        };
        for i in 0..20 {
            let s = next();
            round(
                &mut events,
                i % 2,
                0.5,
                Vec::new(),
                (i % 7) as f64,
                f64::from(u8::from(i % 3 == 0)),
                s,
            );
        }
        let s = next();
        events.push(spec_event(s, &three));
        for i in 0..40 {
            let v = i % 3;
            let s = next();
            round(
                &mut events,
                v,
                1.0,
                vec![v],
                (i % 5) as f64,
                f64::from(u8::from(i % 4 == 0)),
                s,
            );
        }
        let dir = tempfile::tempdir().expect("tmp");
        let path = write_log(dir.path(), &events);
        let log = deployment_log(&path, &three).expect("log");
        assert_eq!(log.n_actions, 3);
        assert_eq!(
            log.eligible.as_ref().expect("sets")[0],
            vec![0, 1],
            "c did not exist yet"
        );
        assert_eq!(log.eligible.as_ref().expect("sets")[20], vec![0]);
        assert_eq!(log.action_features, Some(vec![vec![0.2], vec![0.8], vec![0.5]]));

        let candidate: PolicyConfig = serde_json::from_value(serde_json::json!(
            {"type": "logistic_thompson", "v": 0.5, "floor": 0.01, "shared": true}
        ))
        .expect("policy");
        // Evaluated on revision 2's rounds only (the last 40 of 60): weight 1 everywhere.
        let out = estimate_candidate(&log, &candidate, 0.34, &Settings::default()).expect("estimate");
        assert_eq!(out.rounds, 40);
        let ipw = out.estimates.iter().find(|e| e.name == "ipw").expect("ipw");
        assert!((ipw.value - out.logged_mean).abs() < 1e-12, "{ipw:?}");
        assert_eq!(ipw.diagnostics.raw_weights.max, 1.0);

        // Without the variants' features a shared candidate has nothing to learn over.
        let mut bare = log.clone();
        bare.action_features = None;
        let e = estimate_candidate(&bare, &candidate, 0.5, &Settings::default()).expect_err("no features");
        assert_eq!(e.code(), "offline.no_action_features");
    }
}
