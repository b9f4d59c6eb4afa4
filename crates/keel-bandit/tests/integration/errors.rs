//! Bad input is refused with the right error, and a refused call changes nothing.

use keel_bandit::{BanditError, PolicyConfig, PolicyState};

fn lin() -> PolicyState {
    PolicyState::new(
        PolicyConfig::LinUcb {
            alpha: 1.0,
            floor: 0.1,
            half_life: None,
            shared: false,
        },
        3,
        2,
    )
    .expect("test setup")
}

#[test]
fn contextual_policies_refuse_bad_contexts() {
    let mut s = lin();
    let e = s.probabilities(None).unwrap_err();
    assert_eq!(
        e,
        BanditError::MissingContext {
            policy: "lin_ucb",
            expected: 2
        }
    );
    assert_eq!(e.code(), "missing_context");
    let e = s.probabilities(Some(&[1.0])).unwrap_err();
    assert_eq!(e, BanditError::ContextLength { expected: 2, got: 1 });
    assert_eq!(e.code(), "context_length");
    let e = s.update(0, Some(&[1.0, 2.0, 3.0]), 1.0).unwrap_err();
    assert_eq!(e.code(), "context_length");
    for bad in [f64::NAN, f64::INFINITY, -1e10] {
        let e = s.update(0, Some(&[0.5, bad]), 1.0).unwrap_err();
        assert!(matches!(e, BanditError::InvalidContextValue { index: 1, .. }), "{e}");
        assert_eq!(e.code(), "invalid_context_value");
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    assert_eq!(
        s.decide(Some(&[f64::NAN, 0.0]), &mut rng).unwrap_err().code(),
        "invalid_context_value"
    );
    assert_eq!(s.updates(), 0);
    assert!(s.arm_summaries().iter().all(|a| a.pulls == 0));
}

#[test]
fn non_contextual_policies_ignore_the_context() {
    let mut s = PolicyState::new(PolicyConfig::Ucb1 { floor: 0.0 }, 2, 3).unwrap();
    assert_eq!(s.probabilities(None).unwrap(), s.probabilities(Some(&[1.0])).unwrap());
    s.update(0, Some(&[f64::NAN]), 1.0).unwrap();
    assert_eq!(s.updates(), 1);
}

#[test]
fn contextual_policy_without_features_needs_no_context() {
    let mut s = PolicyState::new(
        PolicyConfig::SquareCb {
            gamma: 10.0,
            floor: 0.0,
            half_life: None,
        },
        2,
        0,
    )
    .unwrap();
    s.update(1, None, 1.0).unwrap();
    let p = s.probabilities(None).unwrap();
    assert!(p[1] > p[0], "{p:?}");
    assert_eq!(s.probabilities(Some(&[])).unwrap(), p);
}

#[test]
fn updates_refuse_bad_actions_and_rewards() {
    let mut s = lin();
    let e = s.update(3, Some(&[0.0, 0.0]), 1.0).unwrap_err();
    assert_eq!(e, BanditError::ActionOutOfRange { action: 3, actions: 3 });
    assert_eq!(e.code(), "action_out_of_range");
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e13] {
        let e = s.update(0, Some(&[0.0, 0.0]), bad).unwrap_err();
        assert_eq!(e.code(), "invalid_reward", "{bad}");
    }
    // Revenue-like rewards are fine for the non-Beta policies.
    s.update(0, Some(&[0.0, 0.0]), 250.0).unwrap();
    s.update(0, Some(&[0.0, 0.0]), -3.0).unwrap();
    assert_eq!(s.updates(), 2);

    let beta = PolicyConfig::ThompsonBeta {
        prior_alpha: 1.0,
        prior_beta: 1.0,
        floor: 0.0,
    };
    let mut s = PolicyState::new(beta, 2, 0).unwrap();
    for bad in [2.0, -0.1, f64::NAN] {
        let e = s.update(0, None, bad).unwrap_err();
        assert!(
            matches!(
                e,
                BanditError::InvalidReward {
                    policy: "thompson_beta",
                    min: 0.0,
                    max: 1.0,
                    ..
                }
            ),
            "{e}"
        );
    }
    s.update(0, None, 0.25).unwrap();
    let arms = s.arm_summaries();
    assert_eq!((arms[0].alpha, arms[0].beta), (Some(1.25), Some(1.75)));
    assert_eq!((arms[0].pulls, arms[0].reward_sum, arms[0].mean), (1, 0.25, 0.25));
    assert_eq!((arms[1].alpha, arms[1].beta, arms[1].pulls), (Some(1.0), Some(1.0), 0));
    assert_eq!(s.updates(), 1);
}

fn problems(config: PolicyConfig, actions: usize, features: usize) -> Vec<String> {
    match config.validate(actions, features) {
        Err(BanditError::InvalidConfig(p)) => p,
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn invalid_configs_are_refused_with_every_problem() {
    assert_eq!(problems(PolicyConfig::FixedWeights { weights: vec![] }, 2, 0).len(), 2);
    let p = problems(
        PolicyConfig::FixedWeights {
            weights: vec![1.0, -1.0, f64::NAN],
        },
        3,
        0,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        problems(
            PolicyConfig::FixedWeights {
                weights: vec![0.0, 0.0]
            },
            2,
            0
        )
        .len(),
        1
    );
    // Finite weights whose sum overflows would give every action probability 0 (found by
    // keel-experiments' body_props: a decision logged with propensity 0).
    let p = problems(
        PolicyConfig::FixedWeights {
            weights: vec![f64::MAX, 1e300],
        },
        2,
        0,
    );
    assert!(p[0].contains("smaller weights"), "{p:?}");
    for epsilon in [-0.1, 1.5, f64::NAN] {
        problems(PolicyConfig::EpsilonGreedy { epsilon }, 2, 0);
    }
    for floor in [-0.1, 1.0, f64::NAN] {
        problems(PolicyConfig::Ucb1 { floor }, 2, 0);
        problems(
            PolicyConfig::LinUcb {
                alpha: 1.0,
                floor,
                half_life: None,
                shared: false,
            },
            2,
            1,
        );
        problems(
            PolicyConfig::SquareCb {
                gamma: 1.0,
                floor,
                half_life: None,
            },
            2,
            1,
        );
        problems(
            PolicyConfig::ThompsonBeta {
                prior_alpha: 1.0,
                prior_beta: 1.0,
                floor,
            },
            2,
            0,
        );
    }
    let p = problems(
        PolicyConfig::ThompsonBeta {
            prior_alpha: 0.0,
            prior_beta: -1.0,
            floor: 1.0,
        },
        0,
        0,
    );
    assert_eq!(p.len(), 4, "{p:?}");
    problems(
        PolicyConfig::ThompsonGaussian {
            prior_mean: 0.0,
            prior_variance: 0.0,
            floor: 0.0,
        },
        2,
        0,
    );
    problems(
        PolicyConfig::LinUcb {
            alpha: -1.0,
            floor: 0.0,
            half_life: None,
            shared: false,
        },
        2,
        1,
    );
    problems(
        PolicyConfig::LinearThompson {
            v: f64::INFINITY,
            floor: 0.0,
            half_life: None,
        },
        2,
        1,
    );
    problems(
        PolicyConfig::SquareCb {
            gamma: -1.0,
            floor: 0.0,
            half_life: None,
        },
        2,
        1,
    );
    problems(
        PolicyConfig::LinUcb {
            alpha: 1.0,
            floor: 0.0,
            half_life: None,
            shared: false,
        },
        2,
        10_000,
    );
    problems(PolicyConfig::Ucb1 { floor: 0.0 }, 5000, 0);

    let e = PolicyState::new(PolicyConfig::EpsilonGreedy { epsilon: 2.0 }, 2, 0).unwrap_err();
    assert_eq!(e.code(), "invalid_policy_config");
    assert_eq!(
        e.to_string(),
        "invalid policy config: epsilon is 2; it must be in [0, 1]"
    );
    assert!(PolicyConfig::EpsilonGreedy { epsilon: 1.0 }.validate(2, 0).is_ok());
    assert!(
        PolicyConfig::FixedWeights {
            weights: vec![0.0, 1.0]
        }
        .validate(2, 0)
        .is_ok()
    );
}

#[test]
fn config_json_has_defaults_and_refuses_unknown_fields() {
    let parse = |s: &str| serde_json::from_str::<PolicyConfig>(s);
    assert_eq!(parse(r#"{"type": "ucb1"}"#).unwrap(), PolicyConfig::Ucb1 { floor: 0.0 });
    assert_eq!(
        parse(r#"{"type": "thompson_beta"}"#).unwrap(),
        PolicyConfig::ThompsonBeta {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            floor: 0.0
        }
    );
    assert_eq!(
        parse(r#"{"type": "thompson_gaussian", "floor": 0.1}"#).unwrap(),
        PolicyConfig::ThompsonGaussian {
            prior_mean: 0.0,
            prior_variance: 1.0,
            floor: 0.1
        }
    );
    assert_eq!(
        parse(r#"{"type": "lin_ucb", "alpha": 1.0}"#).unwrap(),
        PolicyConfig::LinUcb {
            alpha: 1.0,
            floor: 0.0,
            half_life: None,
            shared: false,
        }
    );
    assert_eq!(
        parse(r#"{"type": "square_cb", "gamma": 50}"#).unwrap(),
        PolicyConfig::SquareCb {
            gamma: 50.0,
            floor: 0.0,
            half_life: None,
        }
    );
    assert!(parse(r#"{"type": "ucb1", "flor": 0.1}"#).is_err());
    assert!(parse(r#"{"type": "lin_ucb"}"#).is_err());
    assert!(parse(r#"{"type": "ucb2"}"#).is_err());
    let c = PolicyConfig::LinearThompson {
        v: 0.5,
        floor: 0.05,
        half_life: None,
    };
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#"{"type":"linear_thompson","v":0.5,"floor":0.05}"#);
    assert_eq!(parse(&json).unwrap(), c);
}

#[test]
fn corrupted_saved_states_are_refused() {
    let mut s = lin();
    s.update(1, Some(&[0.5, 0.5]), 1.0).unwrap();
    let good = serde_json::to_value(&s).unwrap();
    assert!(serde_json::from_value::<PolicyState>(good.clone()).is_ok());
    let mut bad = good.clone();
    bad["actions"] = 4.into();
    assert!(serde_json::from_value::<PolicyState>(bad).is_err());
    let mut bad = good.clone();
    bad["linear"]["a_inv"].as_array_mut().unwrap().pop();
    assert!(serde_json::from_value::<PolicyState>(bad).is_err());
    let mut bad = good.clone();
    bad["config"]["floor"] = 1.5.into();
    assert!(serde_json::from_value::<PolicyState>(bad).is_err());
    let mut bad = good;
    bad["surprise"] = 1.into();
    assert!(serde_json::from_value::<PolicyState>(bad).is_err());
}

#[test]
fn bad_input_is_the_callers_fault_and_a_broken_state_is_keels() {
    use keel_types::{ErrorKind, KeelError};
    let mut s = lin();
    let caller = [
        s.probabilities(None).unwrap_err(),
        s.probabilities(Some(&[1.0])).unwrap_err(),
        s.update(0, Some(&[0.5, f64::NAN]), 1.0).unwrap_err(),
        s.update(7, Some(&[0.5, 0.5]), 1.0).unwrap_err(),
        s.update(0, Some(&[0.5, 0.5]), f64::NAN).unwrap_err(),
        PolicyState::new(
            PolicyConfig::LinUcb {
                alpha: -1.0,
                floor: 0.1,
                half_life: None,
                shared: false,
            },
            3,
            2,
        )
        .unwrap_err(),
    ];
    for e in &caller {
        assert_eq!(KeelError::kind(e), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(KeelError::code(e), e.code());
    }
    let broken = BanditError::Numerical("Sherman-Morrison denominator 0".into());
    assert_eq!(broken.kind(), ErrorKind::Internal);
    assert!(broken.kind().is_server_fault());
}
