//! `keel ope ...`: estimate a candidate policy's value on logged data before deploying it
//! (`keel_experiments::offline::ope`: the deployment's decision log as logged bandit feedback,
//! and the candidate's warm-up and estimates). The logging policy's own mean reward on the
//! evaluated rounds is printed beside them.

use std::path::Path;

use anyhow::{Context as _, bail};
use keel_bandit::PolicyConfig;
use keel_experiments::DeploymentSpec;
use keel_experiments::offline::ope::{decision_log_dir, deployment_log, estimate_candidate};
use keel_ope::read_obd_csv;

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
            deployment_log(&decision_log_dir(&ctx.home, &name), &spec)?
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
    let result = tokio::task::spawn_blocking(move || estimate_candidate(&log, &candidate, train_fraction)).await??;
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
