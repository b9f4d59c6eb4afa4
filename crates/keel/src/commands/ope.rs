//! `keel ope ...`: estimate a candidate policy's value on logged data before deploying it.
//!
//! The candidate is a policy definition (the `policy` of a deployment). It is warmed up on the
//! first part of the log (replaying the logged actions and rewards), then its action
//! probabilities on the remaining rounds are evaluated with DM, IPW, SNIPW, DR and SNDR. The
//! reward model of DM/DR/SNDR is the per-action (and per-position) mean reward of the warm-up
//! part. The logging policy's own mean reward on the evaluated rounds is printed beside them.

use std::path::Path;

use anyhow::{Context as _, bail};
use keel_bandit::{PolicyConfig, PolicyState};
use keel_experiments::{DeploymentSpec, Event};
use keel_ope::{ActionDist, Estimate, LoggedBandit, evaluate, read_obd_csv};

use crate::cli::{Global, OpeCommand};
use crate::context::Context;
use crate::output;

pub async fn run(global: &Global, cmd: OpeCommand) -> anyhow::Result<()> {
    let (source, candidate_text, train_fraction, truth) = match &cmd {
        OpeCommand::Obd {
            file,
            candidate,
            train_fraction,
            ground_truth,
        } => (
            format!("obd:{}", file.display()),
            candidate.clone(),
            *train_fraction,
            ground_truth.clone(),
        ),
        OpeCommand::Deployment {
            name,
            candidate,
            train_fraction,
        } => (format!("deployment:{name}"), candidate.clone(), *train_fraction, None),
    };
    if !(0.0..1.0).contains(&train_fraction) {
        bail!("--train-fraction must be in [0, 1)");
    }
    let candidate = parse_candidate(&candidate_text)?;
    let log = match cmd {
        OpeCommand::Obd { file, .. } => {
            let file2 = file.clone();
            tokio::task::spawn_blocking(move || read_obd_csv(&file2))
                .await?
                .with_context(|| format!("cannot read {}", file.display()))?
                .log
        }
        OpeCommand::Deployment { name, .. } => {
            let ctx = Context::open(global).await?;
            let d = ctx.registry.store().get_deployment(&name).await?;
            let spec = DeploymentSpec::from_json(&d.spec)?;
            deployment_log(&ctx.home.join("experiments").join(&name).join("events.jsonl"), &spec)?
        }
    };
    let truth_rate = match truth {
        Some(path) => Some(
            tokio::task::spawn_blocking(move || read_obd_csv(&path))
                .await?
                .context("cannot read the ground-truth log")?
                .log
                .mean_reward(),
        ),
        None => None,
    };
    let result = tokio::task::spawn_blocking(move || estimate(&log, &candidate, train_fraction)).await??;
    if global.json {
        return output::json(&serde_json::json!({
            "source": source,
            "rounds_evaluated": result.rounds,
            "rounds_for_warm_up": result.train_rounds,
            "logging_policy_mean_reward": result.logged_mean,
            "ground_truth": truth_rate,
            "estimates": result.estimates.iter().map(|e| serde_json::json!({
                "estimator": e.name, "value": e.value, "std_err": e.std_err, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
            })).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{source}: {} rounds evaluated after warming the candidate up on {}; logging policy's mean reward there {:.6}",
        result.rounds, result.train_rounds, result.logged_mean
    );
    if let Some(t) = truth_rate {
        println!("ground truth (observed mean reward of the candidate's own log): {t:.6}");
    }
    let rows: Vec<Vec<String>> = result
        .estimates
        .iter()
        .map(|e| {
            vec![
                e.name.to_string(),
                format!("{:.6}", e.value),
                format!("{:.6}", e.std_err),
                format!("[{:.6}, {:.6}]", e.ci_low, e.ci_high),
            ]
        })
        .collect();
    output::table(&["ESTIMATOR", "VALUE", "STD ERR", "95% CI"], &rows);
    Ok(())
}

fn parse_candidate(text: &str) -> anyhow::Result<PolicyConfig> {
    let json = if Path::new(text).is_file() {
        std::fs::read_to_string(text).with_context(|| format!("cannot read {text}"))?
    } else {
        text.to_string()
    };
    serde_json::from_str(&json).with_context(|| {
        format!("the candidate must be a policy definition such as '{{\"type\": \"thompson_beta\"}}' (inline or a file): {json}")
    })
}

struct OpeResult {
    rounds: usize,
    train_rounds: usize,
    logged_mean: f64,
    estimates: Vec<Estimate>,
}

fn estimate(log: &LoggedBandit, candidate: &PolicyConfig, train_fraction: f64) -> anyhow::Result<OpeResult> {
    let n = log.n_rounds();
    let train = ((n as f64) * train_fraction).floor() as usize;
    if n - train < 2 {
        bail!("the log has {n} rounds: too few to evaluate after a warm-up of {train}");
    }
    let features = if candidate.is_contextual() {
        log.contexts.as_ref().and_then(|c| c.first()).map_or(0, Vec::len)
    } else {
        0
    };
    if candidate.is_contextual() && features == 0 {
        bail!("a contextual candidate needs contexts in the log");
    }
    candidate.validate(log.n_actions, features)?;
    let mut policy = PolicyState::new(candidate.clone(), log.n_actions, features)?;
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
        let p = policy.probabilities(ctx(i))?;
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
    };
    sub.validate()?;
    let action_dist = ActionDist::new(m, log.n_actions, len_list, values)?;
    let q_hat = ActionDist::new(m, log.n_actions, len_list, q_values)?;
    let estimates = evaluate(&sub, &action_dist, Some(&q_hat))?;
    Ok(OpeResult {
        rounds: m,
        train_rounds: train,
        logged_mean: sub.mean_reward(),
        estimates,
    })
}

/// keel's own decision log as logged bandit feedback: rewarded decisions of the serving
/// variants, with the propensity they were logged with and their encoded context.
pub fn deployment_log(path: &Path, spec: &DeploymentSpec) -> anyhow::Result<LoggedBandit> {
    let (events, _) = keel_experiments::wal::read_events(path)?;
    let arms = spec.arms();
    let mut decisions: std::collections::HashMap<uuid::Uuid, (usize, f64, Vec<f64>)> = Default::default();
    let mut rounds: Vec<(usize, f64, f64, Vec<f64>)> = Vec::new();
    for raw in events {
        let event: Event = serde_json::from_value(raw)?;
        match event {
            Event::Decision { id, v, p, x, .. } => {
                if let Some(arm) = arms.iter().position(|a| *a == v) {
                    decisions.insert(id, (arm, p, x));
                }
            }
            Event::Reward { id, r, .. } => {
                if let Some((arm, p, x)) = decisions.remove(&id) {
                    rounds.push((arm, r, p, x));
                }
            }
            Event::Revision { .. } | Event::Pause { .. } | Event::CanaryStep { .. } | Event::Output { .. } => {}
        }
    }
    if rounds.is_empty() {
        bail!("{} has no rewarded decisions yet", path.display());
    }
    let has_context = rounds.iter().all(|r| !r.3.is_empty());
    Ok(LoggedBandit {
        n_actions: arms.len(),
        actions: rounds.iter().map(|r| r.0).collect(),
        rewards: rounds.iter().map(|r| r.1).collect(),
        propensities: rounds.iter().map(|r| r.2).collect(),
        positions: None,
        contexts: has_context.then(|| rounds.iter().map(|r| r.3.clone()).collect()),
        timestamps: None,
    })
}
