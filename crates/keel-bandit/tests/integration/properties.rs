//! Property tests of the invariants every policy must keep: the distribution sums to one, the
//! floor holds, the logged propensity is the probability of the chosen action, and a saved state
//! decides exactly like the live one.

use keel_bandit::{PolicyConfig, PolicyState, pick};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn floor() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..0.99f64]
}

fn half_life() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), (1.0..50.0f64).prop_map(Some)]
}

fn config(k: usize) -> impl Strategy<Value = PolicyConfig> {
    prop_oneof![
        prop::collection::vec(0.0..10.0f64, k)
            .prop_filter("a positive weight", |w| w.iter().sum::<f64>() > 0.0)
            .prop_map(|weights| PolicyConfig::FixedWeights { weights }),
        (0.0..=1.0f64).prop_map(|epsilon| PolicyConfig::EpsilonGreedy { epsilon }),
        floor().prop_map(|floor| PolicyConfig::Ucb1 { floor }),
        (0.1..5.0f64, 0.1..5.0f64, floor()).prop_map(|(prior_alpha, prior_beta, floor)| {
            PolicyConfig::ThompsonBeta {
                prior_alpha,
                prior_beta,
                floor,
            }
        }),
        (-5.0..5.0f64, 0.1..10.0f64, floor()).prop_map(|(prior_mean, prior_variance, floor)| {
            PolicyConfig::ThompsonGaussian {
                prior_mean,
                prior_variance,
                floor,
            }
        }),
        (0.0..3.0f64, floor()).prop_map(|(alpha, floor)| PolicyConfig::LinUcb {
            alpha,
            floor,
            half_life: None,
            shared: false,
        }),
        (0.0..3.0f64, floor()).prop_map(|(v, floor)| PolicyConfig::LinearThompson {
            v,
            floor,
            half_life: None
        }),
        (0.0..100.0f64, floor()).prop_map(|(gamma, floor)| PolicyConfig::SquareCb {
            gamma,
            floor,
            half_life: None
        }),
        (0.0..3.0f64, 0.1..10.0f64, floor(), half_life()).prop_map(|(v, prior_variance, floor, half_life)| {
            PolicyConfig::LogisticThompson {
                v,
                prior_variance,
                floor,
                half_life,
                shared: false,
            }
        }),
        (0.0..3.0f64, floor(), 1.0..50.0f64).prop_map(|(alpha, floor, h)| PolicyConfig::LinUcb {
            alpha,
            floor,
            half_life: Some(h),
            shared: false,
        }),
        (0.0..100.0f64, floor(), 1.0..50.0f64).prop_map(|(gamma, floor, h)| PolicyConfig::SquareCb {
            gamma,
            floor,
            half_life: Some(h)
        }),
        Just(PolicyConfig::Contextual {}),
    ]
}

type History = Vec<(usize, Vec<f64>, f64)>;

fn case() -> impl Strategy<Value = (PolicyConfig, usize, usize, History, Vec<f64>, u64)> {
    (1..7usize, 0..5usize).prop_flat_map(|(k, d)| {
        let context = prop::collection::vec(-3.0..3.0f64, d);
        let history = prop::collection::vec((0..k, context.clone(), 0.0..=1.0f64), 0..12);
        (config(k), Just(k), Just(d), history, context, any::<u64>())
    })
}

fn ctx(state: &PolicyState, x: &[f64]) -> Option<Vec<f64>> {
    state.config().is_contextual().then(|| x.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn distributions_are_exact_and_floored((config, k, d, history, x, seed) in case()) {
        let floor = config.floor();
        let mut state = PolicyState::new(config, k, d).unwrap();
        for (a, hx, r) in &history {
            let c = ctx(&state, hx);
            state.update(*a, c.as_deref(), *r).unwrap();
        }
        prop_assert_eq!(state.updates(), history.len() as u64);
        let c = ctx(&state, &x);
        let p = state.probabilities(c.as_deref()).unwrap();
        prop_assert_eq!(p.len(), k);
        prop_assert!((p.iter().sum::<f64>() - 1.0).abs() <= 1e-9, "sum {}", p.iter().sum::<f64>());
        for v in &p {
            prop_assert!(*v >= floor / k as f64 - 1e-12 && *v <= 1.0 + 1e-12, "p {v} floor {floor}");
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..5 {
            let decision = state.decide(c.as_deref(), &mut rng).unwrap();
            prop_assert!(decision.action < k);
            prop_assert_eq!(decision.propensity, decision.probabilities[decision.action]);
            prop_assert!(decision.propensity > 0.0);
            prop_assert_eq!(&decision.probabilities, &p);
        }
    }

    #[test]
    fn saved_state_decides_like_the_live_one((config, k, d, history, x, seed) in case()) {
        let mut state = PolicyState::new(config, k, d).unwrap();
        for (a, hx, r) in &history {
            let c = ctx(&state, hx);
            state.update(*a, c.as_deref(), *r).unwrap();
        }
        let json = serde_json::to_string(&state).unwrap();
        let mut restored: PolicyState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(restored.updates(), state.updates());
        prop_assert_eq!(restored.config(), state.config());
        let c = ctx(&state, &x);
        let (mut rng_a, mut rng_b) = (ChaCha8Rng::seed_from_u64(seed), ChaCha8Rng::seed_from_u64(seed));
        for round in 0..20 {
            let a = state.decide(c.as_deref(), &mut rng_a).unwrap();
            let b = restored.decide(c.as_deref(), &mut rng_b).unwrap();
            prop_assert_eq!(&a, &b);
            let reward = if round % 3 == 0 { 1.0 } else { 0.25 };
            state.update(a.action, c.as_deref(), reward).unwrap();
            restored.update(b.action, c.as_deref(), reward).unwrap();
        }
        prop_assert_eq!(serde_json::to_string(&state).unwrap(), serde_json::to_string(&restored).unwrap());
    }

    #[test]
    fn pick_returns_an_action_of_positive_probability(
        weights in prop::collection::vec(prop_oneof![Just(0.0), 0.0..1.0f64], 1..10),
        u in 0.0..1.0f64,
    ) {
        prop_assume!(weights.iter().sum::<f64>() > 0.0);
        let total: f64 = weights.iter().sum();
        let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let a = pick(&p, u);
        prop_assert!(a < p.len());
        prop_assert!(p[a] > 0.0);
        let below: f64 = p[..a].iter().sum();
        prop_assert!(below <= u + 1e-12);
    }
}

#[test]
fn pick_follows_the_cdf() {
    let p = [0.2, 0.0, 0.5, 0.3];
    assert_eq!(pick(&p, 0.0), 0);
    assert_eq!(pick(&p, 0.199), 0);
    assert_eq!(pick(&p, 0.2), 2);
    assert_eq!(pick(&p, 0.69), 2);
    assert_eq!(pick(&p, 0.7), 3);
    assert_eq!(pick(&p, 0.999_999), 3);
    assert_eq!(pick(&p, 1.0), 3);
    assert_eq!(pick(&p, f64::NAN), 3);
    assert_eq!(pick(&[0.0, 1.0, 0.0], 0.0), 1);
    assert_eq!(pick(&[], 0.5), 0);
}

/// Decisions sampled many times follow the logged probabilities (propensities are not just
/// self-consistent but the real frequencies).
#[test]
fn decisions_follow_their_probabilities() {
    let cases = [
        PolicyConfig::FixedWeights {
            weights: vec![1.0, 2.0, 7.0],
        },
        PolicyConfig::SquareCb {
            gamma: 10.0,
            floor: 0.1,
            half_life: None,
        },
        PolicyConfig::ThompsonBeta {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            floor: 0.05,
        },
        PolicyConfig::LogisticThompson {
            v: 1.0,
            prior_variance: 1.0,
            floor: 0.05,
            half_life: Some(3.0),
            shared: false,
        },
    ];
    for config in cases {
        let mut state = PolicyState::new(config.clone(), 3, 2).unwrap();
        let x = [0.5, -1.0];
        for (a, r) in [(0, 1.0), (1, 0.0), (2, 1.0), (2, 1.0), (0, 0.0)] {
            state.update(a, Some(&x), r).unwrap();
        }
        let p = state.probabilities(Some(&x)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let n = 40_000;
        let mut counts = [0usize; 3];
        for _ in 0..n {
            counts[state.decide(Some(&x), &mut rng).unwrap().action] += 1;
        }
        for a in 0..3 {
            let freq = counts[a] as f64 / n as f64;
            let se = (p[a] * (1.0 - p[a]) / n as f64).sqrt();
            assert!(
                (freq - p[a]).abs() <= 5.0 * se + 1e-9,
                "{config:?} action {a}: freq {freq} p {}",
                p[a]
            );
        }
    }
}
