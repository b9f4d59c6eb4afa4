//! Convergence on synthetic worlds with a known best action: the policies must learn it.

use keel_bandit::{PolicyConfig, PolicyState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs `rounds` Bernoulli rounds with immediate feedback; returns the share of decisions per arm.
fn bernoulli_shares(config: PolicyConfig, rates: &[f64], rounds: usize, seed: u64) -> Vec<f64> {
    let mut state = PolicyState::new(config, rates.len(), 0).expect("test setup");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = vec![0usize; rates.len()];
    for _ in 0..rounds {
        let d = state.decide(None, &mut rng).expect("test setup");
        counts[d.action] += 1;
        let reward = if rng.random::<f64>() < rates[d.action] {
            1.0
        } else {
            0.0
        };
        state.update(d.action, None, reward).expect("test setup");
    }
    assert_eq!(state.updates(), rounds as u64);
    counts.iter().map(|c| *c as f64 / rounds as f64).collect()
}

/// Conversion rates of five promotions, 2% to 5%: the e-mail world.
const RATES: [f64; 5] = [0.02, 0.03, 0.035, 0.04, 0.05];

#[test]
fn thompson_beta_finds_the_best_promotion() {
    let config = PolicyConfig::ThompsonBeta {
        prior_alpha: 1.0,
        prior_beta: 1.0,
        floor: 0.0,
    };
    let shares = bernoulli_shares(config, &RATES, 50_000, 1);
    assert!(shares[4] > 0.7, "{shares:?}");
}

#[test]
fn epsilon_greedy_finds_the_best_promotion() {
    let shares = bernoulli_shares(PolicyConfig::EpsilonGreedy { epsilon: 0.1 }, &RATES, 50_000, 2);
    // 10% uniform exploration caps the best action at 92%.
    assert!(shares[4] > 0.7, "{shares:?}");
}

/// UCB1's bonus `sqrt(2 ln N / n)` is sized for rewards spread over [0, 1]; with 2-5% rates and
/// 1-point gaps it needs ~200k pulls per arm to separate them, so after 50k rounds it only puts the
/// most traffic (a plurality, not a majority) on the best promotion, and ranks the arms right.
#[test]
fn ucb1_ranks_low_rate_promotions() {
    let shares = bernoulli_shares(PolicyConfig::Ucb1 { floor: 0.0 }, &RATES, 50_000, 3);
    assert!(shares[4] > 0.3, "{shares:?}");
    assert!(shares.windows(2).all(|w| w[0] < w[1]), "{shares:?}");
}

#[test]
fn ucb1_finds_the_best_arm() {
    let shares = bernoulli_shares(PolicyConfig::Ucb1 { floor: 0.0 }, &[0.1, 0.2, 0.3, 0.4, 0.6], 50_000, 3);
    assert!(shares[4] > 0.9, "{shares:?}");
}

/// Revenue per e-mail: converts with the arm's rate, then spends 20 to 60.
#[test]
fn thompson_gaussian_finds_the_best_revenue() {
    let rates = [0.02, 0.03, 0.04, 0.06];
    let config = PolicyConfig::ThompsonGaussian {
        prior_mean: 0.0,
        prior_variance: 100.0,
        floor: 0.0,
    };
    let mut state = PolicyState::new(config, rates.len(), 0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut counts = [0usize; 4];
    let rounds = 50_000;
    for _ in 0..rounds {
        let d = state.decide(None, &mut rng).unwrap();
        counts[d.action] += 1;
        let revenue = if rng.random::<f64>() < rates[d.action] {
            rng.random_range(20.0..60.0)
        } else {
            0.0
        };
        state.update(d.action, None, revenue).unwrap();
    }
    let shares: Vec<f64> = counts.iter().map(|c| *c as f64 / rounds as f64).collect();
    assert!(shares[3] > 0.85, "{shares:?}");
}

/// The true conversion probability of action `a` in context `x`: each action suits one feature.
fn contextual_rate(a: usize, x: &[f64]) -> f64 {
    (0.5 + 0.4 * x[a]).clamp(0.0, 1.0)
}

/// Mean true reward of the actions a policy chose (and of uniform random) over the second half.
fn contextual_value(config: PolicyConfig, seed: u64) -> (f64, f64, f64) {
    let (k, d, rounds) = (4, 4, 6_000);
    let mut state = PolicyState::new(config, k, d).expect("test setup");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut policy, mut uniform, mut best) = (0.0, 0.0, 0.0);
    for t in 0..rounds {
        let x: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let decision = state.decide(Some(&x), &mut rng).expect("test setup");
        let rate = contextual_rate(decision.action, &x);
        if t >= rounds / 2 {
            policy += rate;
            uniform += (0..k).map(|a| contextual_rate(a, &x)).sum::<f64>() / k as f64;
            best += (0..k).map(|a| contextual_rate(a, &x)).fold(0.0, f64::max);
        }
        let reward = if rng.random::<f64>() < rate { 1.0 } else { 0.0 };
        state.update(decision.action, Some(&x), reward).expect("test setup");
    }
    let n = (rounds - rounds / 2) as f64;
    (policy / n, uniform / n, best / n)
}

#[test]
fn contextual_policies_beat_uniform_random() {
    for config in [
        PolicyConfig::LinUcb {
            alpha: 1.0,
            floor: 0.0,
            half_life: None,
            shared: false,
        },
        PolicyConfig::LinearThompson {
            v: 0.3,
            floor: 0.0,
            half_life: None,
        },
        PolicyConfig::SquareCb {
            gamma: 50.0,
            floor: 0.0,
            half_life: None,
        },
        PolicyConfig::Contextual {},
        PolicyConfig::LinUcb {
            alpha: 1.0,
            floor: 0.0,
            half_life: Some(2_000.0),
            shared: false,
        },
    ] {
        let (policy, uniform, best) = contextual_value(config.clone(), 5);
        // Uniform random earns 0.50, the best action 0.74 (the mean of the largest of four uniforms).
        assert!((uniform - 0.5).abs() < 0.02 && best > 0.72, "{uniform} {best}");
        assert!(
            policy > uniform + 0.15,
            "{config:?}: policy {policy:.3} uniform {uniform:.3} best {best:.3}"
        );
    }
}
