//! The new-promotion study (bench/experiments/new_promotion.sh): a promotion is added half-way
//! through a campaign on keel's e-mail world (keel-sim's `newpromo`: promotions carry a segment
//! and a value; the new one is a more generous version of the best one); how soon does each
//! learner send it to the customers it is best for, and to no one else?
//!
//! Method: one customer per round, in the world's order, conversions drawn from a uniform fixed
//! per customer (the same draws for every learner), learned at once. The learner starts with the
//! first `k` promotions; at round `at` its state is carried to the `k + 1` promotions
//! (`PolicyState::carry`: what keel does when a revision adds a variant). The per-variant
//! learner is `logistic_thompson` with the default's settings (v 0.5, 1 % floor), one model per
//! promotion (the new one starts from the prior); the shared learner is the same with
//! `"shared": true`, one model over context x promotion features (segment one-hot and value).
//!
//! Best response: after the new promotion appears, each round's decision about it is scored
//! `p_new` when it is the customer's best promotion and `1 - p_new` otherwise (the probability
//! the policy does the right thing with it). Over windows of `WINDOW` rounds, the learner has
//! reached the best response when that score first reaches `TARGET`; the study prints the
//! rounds it took, and the share of the new oracle's lift over uniform kept in the 10,000 rounds
//! after the introduction.
//!
//! `new_promotion SEEDS CUSTOMERS` prints one JSON line per (world, learner).

use keel_bandit::{PolicyConfig, PolicyState};
use keel_sim::newpromo::with_new_promotion;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROMOTIONS: usize = 5;
const BASE_RATE: f64 = 0.025;
const POLICY_SEED: u64 = 11;
const WINDOW: usize = 1_000;
const TARGET: f64 = 0.9;

fn config(shared: bool) -> PolicyConfig {
    PolicyConfig::LogisticThompson {
        v: 0.5,
        prior_variance: 1.0,
        floor: 0.01,
        half_life: None,
        shared,
    }
}

fn new_state(shared: bool, k: usize, features: usize, rows: &[Vec<f64>]) -> anyhow::Result<PolicyState> {
    Ok(if shared {
        PolicyState::with_action_features(config(true), features, rows[..k].to_vec())?
    } else {
        PolicyState::new(config(false), k, features)?
    })
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 2, "usage: new_promotion SEEDS CUSTOMERS");
    let customers: usize = args[1].parse()?;
    let at = customers / 2;
    for seed in args[0].split(',') {
        let seed: u64 = seed.parse()?;
        let w = with_new_promotion(customers, PROMOTIONS, BASE_RATE, seed)?;
        let rows = w.encoded_features();
        let new = w.new_promotion();
        let k = PROMOTIONS;
        let xs: Vec<Vec<f64>> = w.world.customers.iter().map(|c| c.features()).collect();
        let mut urng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xc0ffee);
        let u: Vec<f64> = (0..customers).map(|_| urng.random::<f64>()).collect();
        for shared in [false, true] {
            let mut policy = new_state(shared, k, xs[0].len(), &rows)?;
            let mut rng = ChaCha8Rng::seed_from_u64(POLICY_SEED ^ seed);
            let (mut right, mut chosen) = (Vec::new(), Vec::new());
            let started = std::time::Instant::now();
            for (i, x) in xs.iter().enumerate() {
                if i == at {
                    let keep: Vec<Option<usize>> = (0..=k).map(|a| (a < k).then_some(a)).collect();
                    policy = policy.carry(config(shared), &keep, shared.then(|| rows.clone()))?;
                }
                let d = policy.decide(Some(x), &mut rng)?;
                let p = &w.world.p[i][..policy.actions()];
                chosen.push(p[d.action]);
                if i >= at {
                    let best = p.iter().copied().fold(0.0, f64::max);
                    let p_new = d.probabilities[new];
                    right.push(if p[new] == best { p_new } else { 1.0 - p_new });
                }
                let r = if u[i] < p[d.action] { 1.0 } else { 0.0 };
                policy.update(d.action, Some(x), r)?;
            }
            let reached = right
                .chunks(WINDOW)
                .position(|c| c.iter().sum::<f64>() / c.len() as f64 >= TARGET)
                .map(|windows| (windows + 1) * WINDOW);
            let lo = at;
            let hi = (at + 10_000).min(customers);
            let n = (hi - lo) as f64;
            let rate = chosen[lo..hi].iter().sum::<f64>() / n;
            let uniform = (lo..hi)
                .map(|i| w.world.p[i].iter().sum::<f64>() / (k + 1) as f64)
                .sum::<f64>()
                / n;
            let oracle = (lo..hi)
                .map(|i| w.world.p[i].iter().copied().fold(0.0, f64::max))
                .sum::<f64>()
                / n;
            let curve: Vec<f64> = right
                .chunks(WINDOW)
                .take(20)
                .map(|c| (c.iter().sum::<f64>() / c.len() as f64 * 1000.0).round() / 1000.0)
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "seed": seed,
                    "learner": if shared { "logistic_thompson shared" } else { "logistic_thompson per-variant" },
                    "new_promotion": w.world.promotions[new],
                    "rounds_to_best_response": reached,
                    "horizon": customers - at,
                    "lift_share_10k_after": (rate - uniform) / (oracle - uniform),
                    "right_by_window": curve,
                    "seconds": started.elapsed().as_secs_f64(),
                })
            );
        }
    }
    Ok(())
}
