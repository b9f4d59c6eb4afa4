//! decide with eligibility and action features: one model shared across actions over context x
//! action features (`"shared": true`), deciding among a per-call eligible set, against the
//! per-action policy deciding the same calls, measured in the same run.
//!
//! Two shapes: the bench's usual K = 5 actions and d = 10 context features with 4 action
//! features, and keel's e-mail world (K = 6, d = 17, 9 action features: a segment one-hot over
//! 8 and a value). Each policy is warmed up with 10,000 updates; each call draws its context
//! and eligible set (every action eligible with probability 0.8, at least one) from pre-drawn
//! pools, so the measured loop only decides.
//!
//! A policy keeps the Thompson normals of its version between decides, so a decide right
//! after an update draws them anew: the `*_after_update` rows update the policy (with the
//! reward of the action it chose) before every decide and time the decides only, as a server
//! whose feedback arrives as fast as its decisions would see.
//!
//! Run: `cargo bench -p keel-bandit --bench adf`. Criterion reports the time per decide; a
//! table of decides per second and the ratio to the per-action policy is printed at the end.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keel_bandit::{PolicyConfig, PolicyState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const POOL: usize = 4096;

struct Shape {
    name: &'static str,
    k: usize,
    d: usize,
    m: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "k5_d10_m4",
        k: 5,
        d: 10,
        m: 4,
    },
    Shape {
        name: "email_k6_d17_m9",
        k: 6,
        d: 17,
        m: 9,
    },
];

struct World {
    contexts: Vec<Vec<f64>>,
    eligible: Vec<Vec<bool>>,
    rewards: Vec<Vec<f64>>,
    actions: Vec<Vec<f64>>,
}

impl World {
    fn new(s: &Shape) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Contexts like the e-mail world's: some numbers, the rest one-hot categories.
        let numeric = s.d / 2;
        let contexts: Vec<Vec<f64>> = (0..POOL)
            .map(|_| {
                let mut x: Vec<f64> = (0..numeric).map(|_| rng.random_range(-1.0..1.0)).collect();
                let hot = rng.random_range(numeric..s.d);
                x.extend((numeric..s.d).map(|j| f64::from(u8::from(j == hot))));
                x
            })
            .collect();
        let actions: Vec<Vec<f64>> = (0..s.k)
            .map(|a| {
                let mut f = vec![0.0; s.m];
                f[a % (s.m - 1)] = 1.0;
                f[s.m - 1] = rng.random_range(0.0..1.0);
                f
            })
            .collect();
        let eligible = (0..POOL)
            .map(|_| {
                let mut e: Vec<bool> = (0..s.k).map(|_| rng.random::<f64>() < 0.8).collect();
                if !e.iter().any(|v| *v) {
                    e[rng.random_range(0..s.k)] = true;
                }
                e
            })
            .collect();
        let rewards = contexts
            .iter()
            .map(|x| {
                (0..s.k)
                    .map(|a| {
                        let p = (0.05 + 0.1 * x[a % numeric].max(0.0) + 0.05 * actions[a][s.m - 1]).clamp(0.0, 1.0);
                        if rng.random::<f64>() < p { 1.0 } else { 0.0 }
                    })
                    .collect()
            })
            .collect();
        World {
            contexts,
            eligible,
            rewards,
            actions,
        }
    }
}

fn config(shared: bool) -> PolicyConfig {
    PolicyConfig::LogisticThompson {
        v: 0.5,
        prior_variance: 1.0,
        floor: 0.01,
        half_life: None,
        shared,
    }
}

fn policies() -> Vec<(&'static str, bool, bool)> {
    // (name, shared, with eligibility)
    vec![
        ("per_action", false, false),
        ("per_action_eligible", false, true),
        ("shared_eligible", true, true),
    ]
}

/// The policies of the `*_after_update` rows: (name, shared); all with eligibility.
fn after_update() -> Vec<(&'static str, bool)> {
    vec![
        ("per_action_eligible_after_update", false),
        ("shared_eligible_after_update", true),
    ]
}

fn warmed(shared: bool, s: &Shape, world: &World) -> PolicyState {
    let mut state = if shared {
        PolicyState::with_action_features(config(true), s.d, world.actions.clone()).expect("valid")
    } else {
        PolicyState::new(config(false), s.k, s.d).expect("valid")
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..10_000 {
        let x = &world.contexts[i % POOL];
        let d = state.decide(Some(x), &mut rng).expect("decide");
        state
            .update(d.action, Some(x), world.rewards[i % POOL][d.action])
            .expect("update");
    }
    state
}

#[inline]
fn decide(state: &mut PolicyState, world: &World, i: usize, eligible: bool, rng: &mut ChaCha8Rng) -> usize {
    let x = &world.contexts[i % POOL];
    let mask = eligible.then(|| world.eligible[i % POOL].as_slice());
    let p = state.probabilities_among(Some(x), mask).expect("probabilities");
    keel_bandit::pick(&p, rng.random::<f64>())
}

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

/// Decides per second of decides that each follow an update (the updates not timed).
fn throughput_after_update(budget: Duration, state: &mut PolicyState, world: &World, rng: &mut ChaCha8Rng) -> f64 {
    let start = Instant::now();
    let mut deciding = Duration::ZERO;
    let mut n = 0usize;
    let mut action = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            let x = &world.contexts[n % POOL];
            state
                .update(action, Some(x), world.rewards[n % POOL][action])
                .expect("update");
            let t = Instant::now();
            action = black_box(decide(state, world, n + 1, true, rng));
            deciding += t.elapsed();
            n += 1;
        }
    }
    n as f64 / deciding.as_secs_f64()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let worlds: Vec<World> = SHAPES.iter().map(World::new).collect();
    for (s, world) in SHAPES.iter().zip(&worlds) {
        let mut group = criterion.benchmark_group(format!("decide_{}", s.name));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut i = 0;
        for (name, shared, eligible) in policies() {
            let mut state = warmed(shared, s, world);
            group.bench_function(name, |b| {
                b.iter(|| {
                    i += 1;
                    decide(&mut state, world, i, eligible, &mut rng)
                })
            });
        }
        group.finish();
    }
    criterion.final_summary();

    let budget = Duration::from_millis(1500);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (s, world) in SHAPES.iter().zip(&worlds) {
        println!(
            "\ndecides per second, {} (K = {}, d = {}, action features {}; one core)",
            s.name, s.k, s.d, s.m
        );
        println!("{:<32} {:>14} {:>14}", "policy", "decides/s", "vs per_action");
        let mut anchor = None;
        for (name, shared, eligible) in policies() {
            let mut state = warmed(shared, s, world);
            let rate = throughput(budget, |i| decide(&mut state, world, i, eligible, &mut rng));
            let base = *anchor.get_or_insert(rate);
            println!("{name:<32} {rate:>14.0} {:>14.2}", rate / base);
        }
        for (name, shared) in after_update() {
            let mut state = warmed(shared, s, world);
            let rate = throughput_after_update(budget, &mut state, world, &mut rng);
            let base = anchor.unwrap_or(rate);
            println!("{name:<32} {rate:>14.0} {:>14.2}", rate / base);
        }
    }
}
