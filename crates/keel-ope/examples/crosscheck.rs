//! Keel's half of `tests/ope/crosscheck.py`: reads the Open Bandit Dataset CSV with keel's
//! reader, checks it against the arrays obp built, runs every estimator on the action
//! distribution and `q_hat` that obp produced, and writes `keel.json` for the script to compare.
//!
//! Usage: `cargo run --release -p keel-ope --example crosscheck -- DIR` where DIR holds
//! `meta.json` and the `*.f64` files (raw little-endian f64, numpy C order) the script wrote.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use keel_ope::{ActionDist, Bootstrap, Estimator, EstimatorKind, evaluate, read_item_context_csv, read_obd_csv};
use serde_json::{Value, json};

fn read_f64(path: &Path) -> anyhow::Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.len() % 8 == 0, "{}: size is not a multiple of 8", path.display());
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

fn usize_field(meta: &Value, key: &str) -> anyhow::Result<usize> {
    let v = meta[key]
        .as_u64()
        .with_context(|| format!("meta.json: `{key}` missing"))?;
    Ok(usize::try_from(v)?)
}

fn str_field<'a>(meta: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    meta[key]
        .as_str()
        .with_context(|| format!("meta.json: `{key}` missing"))
}

/// Checks keel's reading of the CSV against obp's arrays, element by element.
fn check_log_matches_obp(dir: &Path, meta: &Value) -> anyhow::Result<keel_ope::LoggedBandit> {
    let obd = read_obd_csv(Path::new(str_field(meta, "obd_csv")?))?;
    let log = obd.log;
    let n = log.n_rounds();
    ensure!(n == usize_field(meta, "n_rounds")?, "n_rounds: keel {n}");
    ensure!(
        log.n_actions == usize_field(meta, "n_actions")?,
        "n_actions: keel {}",
        log.n_actions
    );
    ensure!(
        log.len_list() == usize_field(meta, "len_list")?,
        "len_list: keel {}",
        log.len_list()
    );
    let action = read_f64(&dir.join("obp_action.f64"))?;
    let position = read_f64(&dir.join("obp_position.f64"))?;
    let reward = read_f64(&dir.join("obp_reward.f64"))?;
    let pscore = read_f64(&dir.join("obp_pscore.f64"))?;
    let positions = log.positions.as_ref().context("keel read no positions")?;
    for i in 0..n {
        ensure!(
            log.actions[i] as f64 == action[i],
            "round {i}: action keel {} obp {}",
            log.actions[i],
            action[i]
        );
        ensure!(
            positions[i] as f64 == position[i],
            "round {i}: position keel {} obp {}",
            positions[i],
            position[i]
        );
        ensure!(
            log.rewards[i] == reward[i],
            "round {i}: reward keel {} obp {}",
            log.rewards[i],
            reward[i]
        );
        ensure!(
            log.propensities[i] == pscore[i],
            "round {i}: pscore keel {} obp {}",
            log.propensities[i],
            pscore[i]
        );
    }
    let context = read_f64(&dir.join("obp_context.f64"))?;
    let dim = usize_field(meta, "dim_context")?;
    let contexts = log.contexts.as_ref().context("keel read no contexts")?;
    ensure!(
        contexts[0].len() == dim,
        "dim_context: keel {} obp {dim}",
        contexts[0].len()
    );
    for (i, row) in contexts.iter().enumerate() {
        ensure!(
            row.as_slice() == &context[i * dim..(i + 1) * dim],
            "round {i}: context differs"
        );
    }
    let items = read_item_context_csv(Path::new(str_field(meta, "item_context_csv")?))?;
    let action_context = read_f64(&dir.join("obp_action_context.f64"))?;
    let dim = usize_field(meta, "dim_action_context")?;
    for (i, row) in items.features.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let o = action_context[i * dim + j];
            ensure!(
                (v - o).abs() <= 1e-12 * o.abs().max(1.0),
                "item {i} feature {j}: keel {v} obp {o}"
            );
        }
    }
    println!(
        "keel read {n} rounds: actions, positions, rewards, pscores, {} one-hot context columns and {} item features equal obp's",
        contexts[0].len(),
        dim
    );
    Ok(log)
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).context("usage: crosscheck DIR")?);
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)?;
    let log = check_log_matches_obp(&dir, &meta)?;
    let (n, a, l) = (log.n_rounds(), log.n_actions, log.len_list());
    let action_dist = ActionDist::new(n, a, l, read_f64(&dir.join("action_dist.f64"))?)?;
    let q_hat = ActionDist::new(n, a, l, read_f64(&dir.join("q_hat.f64"))?)?;

    let estimates = evaluate(&log, &action_dist, Some(&q_hat))?;
    if estimates.len() != EstimatorKind::ALL.len() {
        bail!("evaluate returned {} estimates", estimates.len());
    }
    let bootstrap = Bootstrap {
        n_bootstrap_samples: usize_field(&meta, "n_bootstrap")?,
        alpha: 0.05,
        seed: meta["seed"].as_u64().unwrap_or(12345),
    };
    let mut out = serde_json::Map::new();
    for e in &estimates {
        let kind = EstimatorKind::ALL
            .into_iter()
            .find(|k| k.name() == e.name)
            .context("unknown estimator")?;
        let b = Estimator::new(kind).estimate_bootstrap(&log, &action_dist, Some(&q_hat), &bootstrap)?;
        out.insert(
            e.name.to_owned(),
            json!({
                "value": e.value, "std_err": e.std_err, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                "boot_low": b.ci_low, "boot_high": b.ci_high, "boot_std_err": b.std_err,
            }),
        );
    }

    // Throughput of evaluate (all five estimators, including input validation).
    let reps = 20;
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(evaluate(&log, &action_dist, Some(&q_hat))?);
    }
    let secs = start.elapsed().as_secs_f64();
    let throughput = format!(
        "evaluate (5 estimators, {n} rounds x {a} actions x {l} positions, with validation): {:.2} ms per call, {:.2e} rounds/s",
        secs / f64::from(reps) * 1e3,
        (n * reps as usize) as f64 / secs
    );

    let bts = read_obd_csv(Path::new(str_field(&meta, "bts_csv")?))?;
    let report = json!({
        "estimates": out,
        "ground_truth": bts.log.mean_reward(),
        "throughput": throughput,
    });
    std::fs::write(dir.join("keel.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
