//! Keel's half of `tests/ope/crosscheck.py`: reads the Open Bandit Dataset CSV with keel's
//! reader, checks it against the arrays obp built, runs every estimator on the action
//! distribution and `q_hat` that obp produced, and writes `keel.json` for the script to compare.
//!
//! Usage: `cargo run --release -p keel-ope --example crosscheck -- DIR` where DIR holds
//! `meta.json` and the `*.f64` files (raw little-endian f64, numpy C order) the script wrote.
//!
//! The script hands obp's arrays over in keel's row order (timestamp, then file order among
//! equal timestamps; obp's unstable sort may order such ties otherwise). Actions, positions,
//! rewards and contexts must be equal; propensities and item features may differ slightly,
//! because pandas' default CSV float parser is not correctly rounded and keel's is: at most
//! `CSV_RTOL` relative, and the count of such rows is reported.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use keel_ope::{
    ActionDist, Bootstrap, EstimatorKind, Settings, estimator, evaluate_with, read_item_context_csv, read_obd_csv,
};
use serde_json::{Value, json};

fn read_f64(path: &Path) -> anyhow::Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.len() % 8 == 0, "{}: size is not a multiple of 8", path.display());
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Largest relative difference tolerated between keel's and pandas' parse of the same decimal.
/// pandas' default ("high") parser is not correctly rounded: on the OBD sample it is off by up
/// to 8.7e-13 relative (`0.000115` in `bts/all`), by one or two ulps on most other values.
const CSV_RTOL: f64 = 1e-12;

/// Whether two parses of the same decimal agree to [`CSV_RTOL`].
fn csv_close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= CSV_RTOL * a.abs().max(b.abs())
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
    let mut pscores_differing = 0;
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
            csv_close(log.propensities[i], pscore[i]),
            "round {i}: pscore keel {} obp {}",
            log.propensities[i],
            pscore[i]
        );
        pscores_differing += usize::from(log.propensities[i] != pscore[i]);
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
            ensure!(csv_close(*v, o), "item {i} feature {j}: keel {v} obp {o}");
        }
    }
    println!(
        "keel read {n} rounds: actions, positions, rewards, {} one-hot context columns equal obp's; pscores and {} item features \
         within {CSV_RTOL:e} relative ({pscores_differing} pscores differ in the last bits: pandas' CSV float parser)",
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

    let settings = Settings {
        switch_tau: meta["switch_tau"].as_f64().context("meta.json: `switch_tau` missing")?,
        dros_lambda: meta["dros_lambda"]
            .as_f64()
            .context("meta.json: `dros_lambda` missing")?,
    };
    let estimates = evaluate_with(&log, &action_dist, Some(&q_hat), &settings)?;
    if estimates.len() != EstimatorKind::ALL.len() {
        bail!("evaluate returned {} estimates", estimates.len());
    }
    let n_bootstrap = usize_field(&meta, "n_bootstrap")?;
    let bootstrap = Bootstrap {
        n_bootstrap_samples: n_bootstrap,
        alpha: 0.05,
        seed: meta["seed"].as_u64().unwrap_or(12345),
    };
    let mut out = serde_json::Map::new();
    for (e, kind) in estimates.iter().zip(EstimatorKind::ALL) {
        ensure!(
            e.name == kind.name(),
            "estimate order: {} where {} was expected",
            e.name,
            kind.name()
        );
        let mut row = json!({
            "value": e.value, "std_err": e.std_err, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
            "verdict": e.diagnostics.verdict.as_str(),
            "ess": e.diagnostics.weights.map(|w| w.ess),
            "max_weight": e.diagnostics.weights.map(|w| w.max),
        });
        if n_bootstrap > 0 {
            let b = estimator(kind, &settings).estimate_bootstrap(&log, &action_dist, Some(&q_hat), &bootstrap)?;
            row["boot_low"] = json!(b.ci_low);
            row["boot_high"] = json!(b.ci_high);
            row["boot_std_err"] = json!(b.std_err);
        }
        out.insert(e.name.to_owned(), row);
    }
    let raw = estimates[0].diagnostics.raw_weights;

    // Throughput of evaluate (all seven estimators with their diagnostics, including input validation).
    let reps = if meta["bench"].as_bool().unwrap_or(true) { 20 } else { 1 };
    let start = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(evaluate_with(&log, &action_dist, Some(&q_hat), &settings)?);
    }
    let secs = start.elapsed().as_secs_f64();
    let throughput = format!(
        "evaluate (7 estimators with diagnostics, {n} rounds x {a} actions x {l} positions, with validation): {:.2} ms per call, {:.2e} rounds/s",
        secs / f64::from(reps) * 1e3,
        (n * reps as usize) as f64 / secs
    );

    let bts = read_obd_csv(Path::new(str_field(&meta, "bts_csv")?))?;
    let report = json!({
        "estimates": out,
        "ground_truth": bts.log.mean_reward(),
        "raw_weights": {"ess": raw.ess, "max": raw.max, "mean": raw.mean},
        "rare_mass": estimates[0].diagnostics.rare_mass,
        "throughput": throughput,
    });
    std::fs::write(dir.join("keel.json"), serde_json::to_string_pretty(&report)?)?;
    Ok(())
}
