//! Actions that carry features: one model shared across actions (context x action features),
//! eligibility, and the learned state kept when the action set changes.

use keel_bandit::{BanditError, PolicyConfig, PolicyState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

fn logistic(shared: bool) -> PolicyConfig {
    PolicyConfig::LogisticThompson {
        v: 0.5,
        prior_variance: 1.0,
        floor: 0.0,
        half_life: None,
        shared,
    }
}

/// A world where an action's appeal is its features: `kind` (one-hot: "young" or "old"
/// audience) times the customer's age, and `generosity`, which helps everyone.
fn truth(x: f64, a: &[f64]) -> f64 {
    sigmoid(-2.0 + 1.5 * x * (a[0] - a[1]) + 1.0 * a[2])
}

fn train(state: &mut PolicyState, actions: &[Vec<f64>], rounds: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut regret = 0.0;
    for _ in 0..rounds {
        let x = rng.random_range(-1.0..1.0);
        let d = state.decide(Some(&[x]), &mut rng).expect("ok");
        let best = actions.iter().map(|a| truth(x, a)).fold(0.0, f64::max);
        let p = truth(x, &actions[d.action]);
        regret += best - p;
        let r = if rng.random::<f64>() < p { 1.0 } else { 0.0 };
        state.update(d.action, Some(&[x]), r).expect("ok");
    }
    regret / rounds as f64
}

#[test]
fn a_new_action_starts_from_what_similar_ones_taught_the_shared_model() {
    let old = vec![vec![1.0, 0.0, 0.2], vec![0.0, 1.0, 0.2], vec![1.0, 0.0, 0.0]];
    let mut shared = PolicyState::with_action_features(logistic(true), 1, old.clone()).expect("ok");
    train(&mut shared, &old, 6_000, 1);
    // A new action for the young audience, more generous than every old one: the best for
    // every young customer. The shared model sends it to them at once.
    let mut new = old.clone();
    new.push(vec![1.0, 0.0, 0.6]);
    let keep = [Some(0), Some(1), Some(2), None];
    let mut carried = shared.carry(logistic(true), &keep, Some(new.clone())).expect("ok");
    assert_eq!(carried.updates(), shared.updates(), "the policy version carries on");
    let young = carried.probabilities(Some(&[0.9])).expect("ok");
    assert!(young[3] > 0.4, "the new action right away for the young: {young:?}");
    let old_young = shared.probabilities(Some(&[0.9])).expect("ok");
    let carried_old_only = carried
        .probabilities_among(Some(&[0.9]), Some(&[true, true, true, false]))
        .expect("ok");
    for (a, b) in old_young.iter().zip(&carried_old_only) {
        assert!(
            (a - b).abs() < 1e-12,
            "the old actions score as before: {old_young:?} {carried_old_only:?}"
        );
    }
    // A per-action model knows nothing of the new action: its first choices for it are
    // the prior's, so its regret right after is larger.
    let mut per = PolicyState::new(logistic(false), 3, 1).expect("ok");
    train(&mut per, &old, 6_000, 1);
    let mut per = per.carry(logistic(false), &keep, None).expect("ok");
    let shared_regret = train(&mut carried, &new, 1_500, 2);
    let per_regret = train(&mut per, &new, 1_500, 2);
    assert!(
        shared_regret < per_regret,
        "shared {shared_regret} vs per-action {per_regret} in the 1,500 rounds after the new action"
    );
}

#[test]
fn the_distribution_is_over_the_eligible_actions_only() {
    let actions = vec![vec![1.0, 0.0, 0.2], vec![0.0, 1.0, 0.2], vec![1.0, 0.0, 0.0]];
    let configs = [
        logistic(true),
        PolicyConfig::LinUcb {
            alpha: 0.5,
            floor: 0.1,
            half_life: None,
            shared: true,
        },
    ];
    for config in configs {
        let mut state = PolicyState::with_action_features(config, 1, actions.clone()).expect("ok");
        train(&mut state, &actions, 500, 3);
        for mask in [[true, false, true], [false, true, false], [true, true, true]] {
            let p = state.probabilities_among(Some(&[0.3]), Some(&mask)).expect("ok");
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
            for (pa, ok) in p.iter().zip(mask) {
                assert!(ok || *pa == 0.0, "an ineligible action has {pa}: {p:?}");
            }
            if mask.iter().filter(|m| **m).count() == 1 {
                assert_eq!(p[1], 1.0);
            }
        }
        let err = state
            .probabilities_among(Some(&[0.3]), Some(&[false, false, false]))
            .expect_err("refused");
        assert!(matches!(err, BanditError::InvalidEligible(_)), "{err}");
        let err = state
            .probabilities_among(Some(&[0.3]), Some(&[true]))
            .expect_err("refused");
        assert_eq!(err.code(), "invalid_eligible");
    }
    // The floor is spread over the eligible actions: LinUCB's best eligible action gets
    // 1 - floor + floor / 2, the other eligible one floor / 2.
    let mut lin = PolicyState::new(
        PolicyConfig::LinUcb {
            alpha: 0.0,
            floor: 0.2,
            half_life: None,
            shared: false,
        },
        3,
        1,
    )
    .expect("ok");
    let p = lin
        .probabilities_among(Some(&[1.0]), Some(&[false, true, true]))
        .expect("ok");
    assert_eq!(p, vec![0.0, 0.9, 0.1]);
}

#[test]
fn a_shared_state_round_trips_and_refuses_a_mismatch() {
    let actions = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let mut state = PolicyState::with_action_features(logistic(true), 2, actions).expect("ok");
    state.update(0, Some(&[0.5, -1.0]), 1.0).expect("ok");
    let json = serde_json::to_string(&state).expect("ok");
    let mut back: PolicyState = serde_json::from_str(&json).expect("ok");
    assert_eq!(
        back.probabilities(Some(&[0.1, 0.2])).expect("ok"),
        state.probabilities(Some(&[0.1, 0.2])).expect("ok")
    );
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("ok");
    v["action_features"] = serde_json::json!([[1.0, 0.0]]);
    let err = serde_json::from_value::<PolicyState>(v)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("1 actions' features for 2 actions"), "{err}");
    // A shared policy needs its actions' features; features of another width are refused.
    let err = PolicyState::new(logistic(true), 2, 2).expect_err("refused").to_string();
    assert!(err.contains("give every action its features"), "{err}");
    let err = state
        .carry(logistic(true), &[Some(0)], Some(vec![vec![1.0, 0.0, 3.0]]))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("actions' features changed"), "{err}");
    let err = state
        .carry(logistic(false), &[Some(0)], None)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("cannot continue"), "{err}");
}

#[test]
fn per_action_models_keep_the_actions_that_continue() {
    let config = PolicyConfig::LinUcb {
        alpha: 0.3,
        floor: 0.0,
        half_life: None,
        shared: false,
    };
    let actions = vec![vec![1.0, 0.0, 0.2], vec![0.0, 1.0, 0.2], vec![1.0, 0.0, 0.0]];
    let mut state = PolicyState::new(config.clone(), 3, 1).expect("ok");
    train(&mut state, &actions, 800, 4);
    // Remove action 0, keep 2 then 1, add one; and with discounting added.
    let keep = [Some(2), Some(1), None];
    let with_half_life = PolicyConfig::LinUcb {
        alpha: 0.3,
        floor: 0.0,
        half_life: Some(1_000.0),
        shared: false,
    };
    for next in [config, with_half_life] {
        let carried = state.carry(next, &keep, None).expect("ok");
        let (before, after) = (state.arm_summaries(), carried.arm_summaries());
        assert_eq!(after[0].pulls, before[2].pulls);
        assert_eq!(after[1].reward_sum, before[1].reward_sum);
        assert_eq!(after[2].pulls, 0);
        let json = serde_json::to_string(&carried).expect("ok");
        serde_json::from_str::<PolicyState>(&json).expect("a carried state is a valid state");
    }
}

#[test]
fn decides_between_updates_give_what_a_fresh_state_gives() {
    // A state keeps the Thompson normals of its version between decides; a state restored
    // from its JSON keeps none and draws them again: every distribution must be the same,
    // for any context and eligible set, before and after updates.
    let actions = vec![
        vec![1.0, 0.0, 0.2],
        vec![0.0, 1.0, 0.2],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.7],
    ];
    let mut shared = PolicyState::with_action_features(logistic(true), 1, actions.clone()).expect("ok");
    let mut per = PolicyState::new(logistic(false), actions.len(), 1).expect("ok");
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for state in [&mut shared, &mut per] {
        train(state, &actions, 300, 4);
        for round in 0..5 {
            for _ in 0..40 {
                let x = [rng.random_range(-1.0..1.0)];
                let mut mask: Vec<bool> = (0..actions.len()).map(|_| rng.random::<f64>() < 0.6).collect();
                mask[rng.random_range(0..actions.len())] = true;
                let live = state.probabilities_among(Some(&x), Some(&mask)).expect("ok");
                let json = serde_json::to_string(&*state).expect("ok");
                let mut fresh: PolicyState = serde_json::from_str(&json).expect("ok");
                let want = fresh.probabilities_among(Some(&x), Some(&mask)).expect("ok");
                assert_eq!(live, want, "round {round}, context {x:?}, eligible {mask:?}");
            }
            let x = [rng.random_range(-1.0..1.0)];
            state.update(round % actions.len(), Some(&x), 1.0).expect("ok");
        }
    }
}
