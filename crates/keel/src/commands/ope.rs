//! `keel ope ...`: estimate a candidate policy's value on logged data before deploying it
//! (`keel_experiments::offline::ope`: the deployment's decision log as logged bandit feedback,
//! and the candidate's warm-up and estimates). The logging policy's own mean reward on the
//! evaluated rounds is printed beside them, and every estimate comes with its diagnostics
//! (effective sample size, largest and mean importance weight, the candidate's mass on actions
//! the logger rarely took) and a verdict with its reasons (`keel_ope::diagnostics`).

use std::path::Path;

use anyhow::{Context as _, bail};
use keel_bandit::PolicyConfig;
use keel_experiments::DeploymentSpec;
use keel_experiments::offline::ope::{OpeOutcome, deployment_log_in, estimate_candidate};
use keel_ope::{Estimate, Settings, WeightStats, diagnostics, read_obd_csv};
use serde_json::{Value, json};

use crate::cli::{Global, OpeCommand, OpeEstimatorArgs};
use crate::context::Context;
use crate::output;

pub async fn run(global: &Global, cmd: OpeCommand) -> anyhow::Result<()> {
    let (source, candidate_text, train_fraction, truth, args) = match &cmd {
        OpeCommand::Obd {
            file,
            candidate,
            train_fraction,
            ground_truth,
            estimators,
        } => (
            format!("obd:{}", file.display()),
            candidate.clone(),
            *train_fraction,
            ground_truth.clone(),
            *estimators,
        ),
        OpeCommand::Deployment {
            name,
            candidate,
            train_fraction,
            estimators,
            ..
        } => (
            format!("deployment:{name}"),
            candidate.clone(),
            *train_fraction,
            None,
            *estimators,
        ),
    };
    if !(0.0..1.0).contains(&train_fraction) {
        bail!("--train-fraction must be in [0, 1)");
    }
    let settings = settings(&args)?;
    let candidate = parse_candidate(&candidate_text)?;
    let mut outcome_label = None;
    let log = match cmd {
        OpeCommand::Obd { file, .. } => {
            let file2 = file.clone();
            tokio::task::spawn_blocking(move || read_obd_csv(&file2))
                .await?
                .with_context(|| format!("cannot read {}", file.display()))?
                .log
        }
        OpeCommand::Deployment { name, outcome, .. } => {
            let ctx = Context::open(global).await?;
            let d = ctx.registry.store().get_deployment(&name).await?;
            let spec = DeploymentSpec::from_json(&d.spec)?;
            let outcome = OpeOutcome::parse(&outcome, &spec)?;
            outcome_label = Some(outcome.label(&spec));
            deployment_log_in(ctx.registry.store(), &ctx.home, &name, &spec, &outcome).await?
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
    let result =
        tokio::task::spawn_blocking(move || estimate_candidate(&log, &candidate, train_fraction, &settings)).await??;
    let Some(first) = result.estimates.first() else {
        bail!("no estimate was computed");
    };
    let raw = first.diagnostics.raw_weights;
    let (rare_mass, rare_threshold) = (first.diagnostics.rare_mass, first.diagnostics.rare_threshold);
    if global.json {
        return output::json(&json!({
            "source": source,
            "outcome": outcome_label,
            "rounds_evaluated": result.rounds,
            "rounds_for_warm_up": result.train_rounds,
            "logging_policy_mean_reward": result.logged_mean,
            "ground_truth": truth_rate,
            "settings": {"switch_tau": settings.switch_tau, "dros_lambda": settings.dros_lambda},
            "importance_weights": weights_json(&raw),
            "rare_action_mass": rare_mass,
            "rare_action_threshold": rare_threshold,
            "verdict_thresholds": thresholds_json(),
            "estimates": result.estimates.iter().map(estimate_json).collect::<Vec<_>>(),
        }));
    }
    if let Some(label) = &outcome_label {
        println!("outcome: {label}");
    }
    println!(
        "{source}: {} rounds evaluated after warming the candidate up on {}; logging policy's mean reward there {:.6}",
        result.rounds, result.train_rounds, result.logged_mean
    );
    if let Some(t) = truth_rate {
        println!("ground truth (observed mean reward of the candidate's own log): {t:.6}");
    }
    println!(
        "importance weights (candidate / logger): effective sample size {:.1} of {} ({:.2}%), max {:.4}, mean {:.4}; \
         {:.1}% of the candidate's probability on actions the logger took in under 1/{:.0} of the rounds",
        raw.ess,
        raw.n,
        100.0 * raw.ess_share,
        raw.max,
        raw.mean,
        100.0 * rare_mass,
        1.0 / rare_threshold
    );
    let rows: Vec<Vec<String>> = result
        .estimates
        .iter()
        .map(|e| {
            let w = e.diagnostics.weights;
            vec![
                e.name.to_string(),
                format!("{:.6}", e.value),
                format!("{:.6}", e.std_err),
                format!("[{:.6}, {:.6}]", e.ci_low, e.ci_high),
                w.map_or_else(|| "-".into(), |w| format!("{:.1}", w.ess)),
                w.map_or_else(|| "-".into(), |w| format!("{:.4}", w.max)),
                e.diagnostics.verdict.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "ESTIMATOR",
            "VALUE",
            "STD ERR",
            "95% CI",
            "ESS",
            "MAX WEIGHT",
            "VERDICT",
        ],
        &rows,
    );
    for e in &result.estimates {
        for reason in &e.diagnostics.reasons {
            println!("  {}: {reason}", e.name);
        }
    }
    println!(
        "(switch-dr tau {}, dr-os lambda {}; ESS and max weight are of the weights each estimator uses; \
         the verdict's thresholds are in --json and crates/keel-ope/README.md)",
        settings.switch_tau, settings.dros_lambda
    );
    Ok(())
}

fn settings(args: &OpeEstimatorArgs) -> anyhow::Result<Settings> {
    for (name, v) in [("--switch-tau", args.switch_tau), ("--dros-lambda", args.dros_lambda)] {
        if v.is_nan() || v < 0.0 {
            bail!("{name} must be a non-negative number (inf is allowed), got {v}");
        }
    }
    Ok(Settings {
        switch_tau: args.switch_tau,
        dros_lambda: args.dros_lambda,
    })
}

fn weights_json(w: &WeightStats) -> Value {
    json!({
        "effective_sample_size": w.ess,
        "ess_share": w.ess_share,
        "max_weight": w.max,
        "mean_weight": w.mean,
        "max_weight_share": w.max_share,
    })
}

fn estimate_json(e: &Estimate) -> Value {
    let d = &e.diagnostics;
    json!({
        "estimator": e.name, "value": e.value, "std_err": e.std_err, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
        "diagnostics": {
            "weights": d.weights.as_ref().map(weights_json),
            "rare_action_mass": d.rare_mass,
            "verdict": d.verdict.as_str(),
            "reasons": d.reasons,
        },
    })
}

fn thresholds_json() -> Value {
    json!({
        "do_not_trust": {
            "effective_sample_size_below": diagnostics::MIN_ESS,
            "max_weight_share_above": diagnostics::MAX_WEIGHT_SHARE_DO_NOT_TRUST,
            "rare_action_mass_above": diagnostics::RARE_MASS_DO_NOT_TRUST,
        },
        "caution": {
            "ess_share_below": diagnostics::CAUTION_ESS_SHARE,
            "max_weight_share_above": diagnostics::MAX_WEIGHT_SHARE_CAUTION,
            "rare_action_mass_above": diagnostics::RARE_MASS_CAUTION,
            "mean_weight_outside": [diagnostics::MEAN_WEIGHT_LOW, diagnostics::MEAN_WEIGHT_HIGH],
            "dm": "always: its bias is not measured by these diagnostics",
        },
        "rare_action": format!("the logger took it in fewer than 1/({} * n_actions) of the rounds", diagnostics::RARE_FACTOR),
    })
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
