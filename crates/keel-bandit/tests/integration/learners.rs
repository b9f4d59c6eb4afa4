//! The learners for conversions and changing worlds: Bayesian logistic Thompson sampling,
//! discounting (`half_life`), and the `contextual` default.

use keel_bandit::{BanditError, PolicyConfig, PolicyState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// Two actions whose conversion depends on one feature in opposite directions: the logistic
/// policy learns to send each customer the action that converts better for them.
#[test]
fn logistic_thompson_learns_a_logistic_world() {
    let config = PolicyConfig::LogisticThompson {
        v: 1.0,
        prior_variance: 1.0,
        floor: 0.0,
        half_life: None,
        shared: false,
    };
    let mut state = PolicyState::new(config, 2, 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let truth = |a: usize, x: f64| {
        if a == 0 {
            sigmoid(-2.0 + 1.5 * x)
        } else {
            sigmoid(-2.0 - 1.5 * x)
        }
    };
    let mut late_regret = 0.0;
    for round in 0..6_000 {
        let x = rng.random_range(-2.0..2.0);
        let d = state.decide(Some(&[x]), &mut rng).unwrap();
        let p = truth(d.action, x);
        if round >= 5_000 {
            late_regret += truth(0, x).max(truth(1, x)) - p;
        }
        let r = if rng.random::<f64>() < p { 1.0 } else { 0.0 };
        state.update(d.action, Some(&[x]), r).unwrap();
    }
    // Uniform choice loses about 0.16 per round here; the learned policy nearly nothing.
    assert!(
        late_regret / 1_000.0 < 0.02,
        "regret per round {}",
        late_regret / 1_000.0
    );
    let high = state.probabilities(Some(&[1.8])).unwrap();
    let low = state.probabilities(Some(&[-1.8])).unwrap();
    assert!(high[0] > 0.9 && low[1] > 0.9, "high {high:?} low {low:?}");
}

/// Greedy learners (LinUCB with alpha 0) after the world flips: the discounted one follows,
/// the undiscounted one still averages over the old world.
#[test]
fn discounting_follows_a_world_that_flips() {
    for half_life in [None, Some(200.0)] {
        let config = PolicyConfig::LinUcb {
            alpha: 0.0,
            floor: 0.0,
            half_life,
            shared: false,
        };
        let mut state = PolicyState::new(config, 2, 1).unwrap();
        let x = [1.0];
        for round in 0..4_000 {
            let flipped = round >= 2_500;
            // Both actions observed every other round, the first one converting before the flip.
            let a = round % 2;
            let r = if (a == 0) != flipped { 1.0 } else { 0.0 };
            state.update(a, Some(&x), r).unwrap();
        }
        let p = state.probabilities(Some(&x)).unwrap();
        match half_life {
            None => assert_eq!(p, vec![1.0, 0.0], "the undiscounted model still prefers the old best"),
            Some(_) => assert_eq!(p, vec![0.0, 1.0], "the discounted model follows the flip"),
        }
    }
}

#[test]
fn bad_settings_and_rewards_are_refused() {
    let logistic = |half_life| PolicyConfig::LogisticThompson {
        v: 1.0,
        prior_variance: 1.0,
        floor: 0.0,
        half_life,
        shared: false,
    };
    let err = PolicyState::new(logistic(Some(0.5)), 2, 1).unwrap_err();
    assert!(err.to_string().contains("half_life is 0.5"), "{err}");
    assert!(PolicyState::new(logistic(Some(f64::NAN)), 2, 1).is_err());
    let bad = PolicyConfig::LogisticThompson {
        v: -1.0,
        prior_variance: 0.0,
        floor: 1.0,
        half_life: None,
        shared: false,
    };
    match bad.validate(2, 1) {
        Err(BanditError::InvalidConfig(problems)) => assert_eq!(problems.len(), 3, "{problems:?}"),
        other => panic!("expected three problems, got {other:?}"),
    }
    let mut state = PolicyState::new(logistic(None), 2, 1).unwrap();
    let err = state.update(0, Some(&[1.0]), 2.0).unwrap_err();
    assert!(matches!(err, BanditError::InvalidReward { .. }), "{err}");
    assert_eq!(state.updates(), 0, "nothing learned from a refused reward");
}

#[test]
fn the_contextual_default_parses_resolves_and_decides() {
    let config: PolicyConfig = serde_json::from_value(serde_json::json!({"type": "contextual"})).unwrap();
    assert_eq!(config, PolicyConfig::Contextual {});
    assert!(config.is_contextual());
    assert!(serde_json::from_value::<PolicyConfig>(serde_json::json!({"type": "contextual", "gamma": 3})).is_err());
    let resolved = config.resolved();
    assert_eq!(resolved, PolicyConfig::recommended_contextual());
    assert_ne!(resolved.name(), "contextual");
    let mut state = PolicyState::new(config, 3, 2).unwrap();
    assert_eq!(state.config(), &resolved, "the state keeps the concrete learner");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let d = state.decide(Some(&[0.5, 1.0]), &mut rng).unwrap();
    assert!((d.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    state.update(d.action, Some(&[0.5, 1.0]), 1.0).unwrap();
    // A saved state naming "contextual" instead of its learner is refused.
    let mut json = serde_json::to_value(&state).unwrap();
    json["config"] = serde_json::json!({"type": "contextual"});
    assert!(serde_json::from_value::<PolicyState>(json).is_err());
}

#[test]
fn a_saved_state_with_mismatched_discounting_is_refused() {
    let config = PolicyConfig::SquareCb {
        gamma: 10.0,
        floor: 0.0,
        half_life: Some(10.0),
    };
    let mut state = PolicyState::new(config, 2, 1).unwrap();
    state.update(1, Some(&[2.0]), 1.0).unwrap();
    let mut json = serde_json::to_value(&state).unwrap();
    json["config"]["half_life"] = serde_json::Value::Null;
    let err = serde_json::from_value::<PolicyState>(json).unwrap_err();
    assert!(err.to_string().contains("half_life"), "{err}");
}
