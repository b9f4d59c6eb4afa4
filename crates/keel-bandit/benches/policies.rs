//! decide + update throughput of every policy at K = 5 actions and d = 10 features, against an
//! anchor measured in the same run: a uniform random choice through `pick` (no learning).
//!
//! Run: `cargo bench -p keel-bandit --bench policies`. Criterion reports the time per pair; a
//! table of pairs per second and the ratio to the anchor is printed at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keel_bandit::{PolicyConfig, PolicyState, pick};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const K: usize = 5;
const D: usize = 10;
const POOL: usize = 4096;

/// Pre-drawn contexts and rewards, so the measured loop only decides and learns.
struct World {
    contexts: Vec<Vec<f64>>,
    rewards: Vec<[f64; K]>,
}

impl World {
    fn new() -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let contexts: Vec<Vec<f64>> = (0..POOL)
            .map(|_| (0..D).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let rewards = contexts
            .iter()
            .map(|x| {
                let mut r = [0.0; K];
                for (a, v) in r.iter_mut().enumerate() {
                    let p = (0.3 + 0.2 * x[a]).clamp(0.0, 1.0);
                    *v = if rng.random::<f64>() < p { 1.0 } else { 0.0 };
                }
                r
            })
            .collect();
        World { contexts, rewards }
    }
}

fn policies() -> Vec<(&'static str, PolicyConfig)> {
    vec![
        ("fixed_weights", PolicyConfig::FixedWeights { weights: vec![1.0; K] }),
        ("epsilon_greedy", PolicyConfig::EpsilonGreedy { epsilon: 0.1 }),
        ("ucb1", PolicyConfig::Ucb1 { floor: 0.05 }),
        (
            "thompson_beta",
            PolicyConfig::ThompsonBeta {
                prior_alpha: 1.0,
                prior_beta: 1.0,
                floor: 0.05,
            },
        ),
        (
            "thompson_gaussian",
            PolicyConfig::ThompsonGaussian {
                prior_mean: 0.0,
                prior_variance: 1.0,
                floor: 0.05,
            },
        ),
        (
            "lin_ucb",
            PolicyConfig::LinUcb {
                alpha: 1.0,
                floor: 0.05,
                half_life: None,
                shared: false,
            },
        ),
        (
            "linear_thompson",
            PolicyConfig::LinearThompson {
                v: 0.3,
                floor: 0.05,
                half_life: None,
            },
        ),
        (
            "square_cb",
            PolicyConfig::SquareCb {
                gamma: 50.0,
                floor: 0.05,
                half_life: None,
            },
        ),
        ("contextual (logistic_thompson)", PolicyConfig::recommended_contextual()),
        (
            "lin_ucb_half_life_5000",
            PolicyConfig::LinUcb {
                alpha: 1.0,
                floor: 0.05,
                half_life: Some(5000.0),
                shared: false,
            },
        ),
    ]
}

/// A policy warmed up with 10,000 updates (so Thompson caches run on their steady schedule).
fn warmed(config: &PolicyConfig, world: &World) -> PolicyState {
    let mut state = PolicyState::new(config.clone(), K, D).expect("valid bench config");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..10_000 {
        step(&mut state, world, i, &mut rng);
    }
    state
}

#[inline]
fn step(state: &mut PolicyState, world: &World, i: usize, rng: &mut ChaCha8Rng) -> usize {
    let x = &world.contexts[i % POOL];
    let d = state.decide(Some(x), rng).expect("decide");
    state
        .update(d.action, Some(x), world.rewards[i % POOL][d.action])
        .expect("update");
    d.action
}

#[inline]
fn anchor(world: &World, i: usize, rng: &mut ChaCha8Rng) -> usize {
    let probabilities = vec![1.0 / K as f64; K];
    let a = pick(&probabilities, rng.random::<f64>());
    black_box(world.rewards[i % POOL][a]);
    a
}

/// Pairs per second of `f` over about `budget`.
fn throughput(budget: Duration, mut f: impl FnMut(usize) -> usize) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            black_box(f(n));
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let world = World::new();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut group = criterion.benchmark_group("decide_update_k5_d10");
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut i = 0;
        group.bench_function("anchor_uniform_pick", |b| {
            b.iter(|| {
                i += 1;
                anchor(&world, i, &mut rng)
            })
        });
        for (name, config) in policies() {
            let mut state = warmed(&config, &world);
            group.bench_function(name, |b| {
                b.iter(|| {
                    i += 1;
                    step(&mut state, &world, i, &mut rng)
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();

    // The table: each policy and the anchor timed back to back in this run.
    let budget = Duration::from_millis(700);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let anchor_rate = throughput(budget, |i| anchor(&world, i, &mut rng));
    println!("\ndecide+update pairs per second, K = {K}, d = {D} (one core)");
    println!("{:<20} {:>14} {:>18}", "policy", "pairs/s", "anchor/policy");
    println!("{:<20} {:>14.0} {:>18}", "anchor_uniform_pick", anchor_rate, "1.0");
    for (name, config) in policies() {
        let mut state = warmed(&config, &world);
        let rate = throughput(budget, |i| step(&mut state, &world, i, &mut rng));
        println!("{name:<20} {rate:>14.0} {:>18.1}", anchor_rate / rate);
    }
}
