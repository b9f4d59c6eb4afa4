//! The learner study (bench/experiments/learners.sh): keel's contextual learners, in process, on
//! e-mail worlds drawn from seeds (keel-sim's `World::drawn`), with and without drifting appeal.
//!
//! Method: one customer per round, in the world's order; the policy decides on the customer's
//! context encoded as keel encodes it (`Customer::features`, 17 numbers), the conversion is drawn
//! from a uniform fixed per customer (`u_i < p[i][a]`, the same draws for every learner and for
//! Vowpal Wabbit, which reads them from `dump`), and the policy learns it at once. The figures use
//! expected conversions (`p[i][a]` of the chosen promotion), which are less noisy than the draws.
//!
//! `learners run SEEDS CUSTOMERS [DRIFT_AT]` prints one JSON line per (world, learner); a seed
//! written `k7` is keel's own world (the flagship's, `World::new`) under seed 7 instead of a drawn one;
//! `learners dump SEED CUSTOMERS [DRIFT_AT]` prints the world as CSV for the VW side:
//! 17 features, then `p_0..p_{k-1}` in force at that round, then `u`.

use std::time::Instant;

use keel_bandit::{PolicyConfig, PolicyState};
use keel_sim::world::World;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROMOTIONS: usize = 5;
const BASE_RATE: f64 = 0.025;
/// keel's randomness is seeded apart from the world's.
const POLICY_SEED: u64 = 11;
/// Rounds after the shift at whose end recovery is read, and the window it is read over.
const RECOVERY_ROUNDS: usize = 20_000;
const RECOVERY_WINDOW: usize = 5_000;

fn grid(drift: bool) -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    let mut g: Vec<serde_json::Value> = vec![json!({"type": "contextual"})];
    if !drift {
        for gamma in [100.0, 400.0, 1000.0, 3000.0] {
            g.push(json!({"type": "square_cb", "gamma": gamma, "floor": 0.01}));
        }
        for alpha in [0.1, 0.5, 1.0] {
            g.push(json!({"type": "lin_ucb", "alpha": alpha, "floor": 0.01}));
        }
        g.push(json!({"type": "lin_ucb", "alpha": 0.5, "floor": 0.0}));
        for v in [0.02, 0.05, 0.2] {
            g.push(json!({"type": "linear_thompson", "v": v, "floor": 0.01}));
        }
        for v in [0.25, 0.5, 1.0] {
            g.push(json!({"type": "logistic_thompson", "v": v, "floor": 0.01}));
        }
    }
    let half_lives: &[f64] = if drift { &[0.0, 2_500.0, 5_000.0] } else { &[20_000.0] };
    for h in half_lives {
        for base in [
            json!({"type": "square_cb", "gamma": 400.0, "floor": 0.01}),
            json!({"type": "lin_ucb", "alpha": 0.5, "floor": 0.01}),
            json!({"type": "linear_thompson", "v": 0.05, "floor": 0.01}),
            json!({"type": "logistic_thompson", "v": 0.5, "floor": 0.01}),
        ] {
            let mut c = base;
            if *h > 0.0 {
                c["half_life"] = json!(h);
            }
            g.push(c);
        }
    }
    g.into_iter().map(|c| (label(&c), c)).collect()
}

fn label(c: &serde_json::Value) -> String {
    let mut parts = vec![c["type"].as_str().unwrap_or("?").to_string()];
    for (k, v) in c.as_object().into_iter().flatten() {
        if k != "type" {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(" ")
}

struct Run {
    world: World,
    after: Option<(usize, World)>,
    u: Vec<f64>,
}

impl Run {
    fn new(token: &str, customers: usize, drift_at: Option<usize>) -> anyhow::Result<Run> {
        let seed = seed_of(token)?;
        let world = if token.starts_with('k') {
            World::new(customers, PROMOTIONS, BASE_RATE, seed)?
        } else {
            World::drawn(customers, PROMOTIONS, BASE_RATE, seed)?
        };
        let after = drift_at.map(|at| (at, world.drifted(seed)));
        let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xc0ffee);
        let u = (0..customers).map(|_| rng.random::<f64>()).collect();
        Ok(Run { world, after, u })
    }

    fn p(&self, i: usize) -> &[f64] {
        match &self.after {
            Some((at, w)) if i >= *at => &w.p[i],
            _ => &self.world.p[i],
        }
    }

    /// Uniform and oracle expected rates over rounds `lo..hi`.
    fn anchors(&self, lo: usize, hi: usize) -> (f64, f64) {
        let n = (hi - lo) as f64;
        let (mut uniform, mut oracle) = (0.0, 0.0);
        for i in lo..hi {
            let p = self.p(i);
            uniform += p.iter().sum::<f64>() / p.len() as f64;
            oracle += p.iter().copied().fold(0.0, f64::max);
        }
        (uniform / n, oracle / n)
    }
}

fn seed_of(token: &str) -> anyhow::Result<u64> {
    Ok(token.trim_start_matches('k').parse()?)
}

fn share(chosen: &[f64], run: &Run, lo: usize, hi: usize) -> f64 {
    let rate = chosen[lo..hi].iter().sum::<f64>() / (hi - lo) as f64;
    let (uniform, oracle) = run.anchors(lo, hi);
    (rate - uniform) / (oracle - uniform)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: learners run SEEDS CUSTOMERS [DRIFT_AT] | learners dump SEED CUSTOMERS [DRIFT_AT]";
    anyhow::ensure!(args.len() >= 3, "{usage}");
    let customers: usize = args[2].parse()?;
    let drift_at: Option<usize> = args.get(3).map(|s| s.parse()).transpose()?;
    if let Some(at) = drift_at {
        anyhow::ensure!(
            at + RECOVERY_ROUNDS <= customers,
            "the shift at {at} leaves fewer than {RECOVERY_ROUNDS} rounds"
        );
    }
    match args[0].as_str() {
        "dump" => {
            let run = Run::new(&args[1], customers, drift_at)?;
            let mut out = String::new();
            for (i, c) in run.world.customers.iter().enumerate() {
                let row: Vec<String> = c
                    .features()
                    .iter()
                    .chain(run.p(i))
                    .chain([&run.u[i]])
                    .map(|v| format!("{v}"))
                    .collect();
                out.push_str(&row.join(","));
                out.push('\n');
            }
            print!("{out}");
        }
        "run" => {
            for token in args[1].split(',') {
                let run = Run::new(token, customers, drift_at)?;
                let seed = seed_of(token)?;
                let xs: Vec<Vec<f64>> = run.world.customers.iter().map(|c| c.features()).collect();
                for (name, config) in grid(drift_at.is_some()) {
                    let config: PolicyConfig = serde_json::from_value(config)?;
                    let mut policy = PolicyState::new(config, PROMOTIONS, xs[0].len())?;
                    let mut rng = ChaCha8Rng::seed_from_u64(POLICY_SEED ^ seed);
                    let mut chosen = Vec::with_capacity(customers);
                    let started = Instant::now();
                    for (i, x) in xs.iter().enumerate() {
                        let d = policy.decide(Some(x), &mut rng)?;
                        let p = run.p(i)[d.action];
                        chosen.push(p);
                        let reward = if run.u[i] < p { 1.0 } else { 0.0 };
                        policy.update(d.action, Some(x), reward)?;
                    }
                    let seconds = started.elapsed().as_secs_f64();
                    let mut line = serde_json::json!({
                        "learner": "keel",
                        "policy": name,
                        "seed": seed,
                        "world": if token.starts_with('k') { "keel" } else { "drawn" },
                        "customers": customers,
                        "share": share(&chosen, &run, 0, customers),
                        "rounds_per_second": customers as f64 / seconds,
                    });
                    if let Some(at) = drift_at {
                        let end = at + RECOVERY_ROUNDS;
                        line["share_before_shift"] = share(&chosen, &run, at - RECOVERY_WINDOW, at).into();
                        line["share_recovered"] = share(&chosen, &run, end - RECOVERY_WINDOW, end).into();
                        line["share_after_shift"] = share(&chosen, &run, at, customers).into();
                    }
                    println!("{line}");
                }
            }
        }
        _ => anyhow::bail!("{usage}"),
    }
    Ok(())
}
