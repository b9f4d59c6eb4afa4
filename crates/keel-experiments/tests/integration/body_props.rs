//! Property tests of what the deployment routes read from callers (issue 18, "bad input,
//! everywhere"): deployment specs (`PUT /v1/deployments/{name}`), decide contexts and
//! feedback events. Arbitrary documents and valid ones with a value replaced are parsed or
//! refused as the caller's fault (never a server-fault kind, never a panic); generated valid
//! specs round-trip through JSON, open as a running engine and decide with a propensity in
//! (0, 1]; arbitrary rewards for real decisions are recorded or refused as the caller's fault.

use std::sync::LazyLock;

use keel_experiments::{Deployment, DeploymentSpec, Durability, RewardIn, validate_name};
use proptest::prelude::*;
use serde_json::{Value, json};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![0.0, 0.5, 1.0, -1.0, 1e308, -1e308, 5e-324]).prop_map(Value::from),
        "[a-z_]{0,10}".prop_map(Value::from),
        prop::sample::select(vec![
            "fixed_weights",
            "epsilon_greedy",
            "ucb1",
            "thompson_beta",
            "thompson_gaussian",
            "lin_ucb",
            "linear_thompson",
            "square_cb",
            "numeric",
            "categorical",
            "binary",
            "continuous",
            "a",
            "b",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "variants",
                        "policy",
                        "type",
                        "name",
                        "weights",
                        "epsilon",
                        "alpha",
                        "floor",
                        "context",
                        "levels",
                        "control",
                        "variant",
                        "share",
                        "reward",
                        "kind",
                        "min",
                        "max",
                        "default",
                        "window_seconds",
                        "canary",
                        "steps",
                        "guardrails",
                        "seed",
                        "shadow",
                        "model",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// A weight, as a team might write one (including absurdly large ones whose sum stays finite;
/// see `fixed_weights_of_any_size` for sums that overflow).
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1000.0f64,
        Just(0.0),
        Just(1e300),
        Just(f64::MAX / 8.0),
        1e-300..1e-200f64
    ]
}

fn floor() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), 0.0..0.999f64]
}

/// A valid spec of only action variants (no registry needed to open it).
fn valid_spec() -> impl Strategy<Value = Value> {
    let n = 1usize..5;
    n.prop_flat_map(|n| {
        let contextual = prop_oneof![
            (0.0..10.0f64, floor()).prop_map(|(a, f)| json!({"type": "lin_ucb", "alpha": a, "floor": f})),
            (0.0..10.0f64, floor()).prop_map(|(v, f)| json!({"type": "linear_thompson", "v": v, "floor": f})),
            (0.0..100.0f64, floor()).prop_map(|(g, f)| json!({"type": "square_cb", "gamma": g, "floor": f})),
        ];
        let plain = prop_oneof![
            prop::collection::vec(weight(), n)
                .prop_filter("a positive weight", |w| w.iter().any(|x| *x > 0.0))
                .prop_map(|w| json!({"type": "fixed_weights", "weights": w})),
            (0.0..=1.0f64).prop_map(|e| json!({"type": "epsilon_greedy", "epsilon": e})),
            floor().prop_map(|f| json!({"type": "ucb1", "floor": f})),
            (1e-3..100.0f64, 1e-3..100.0f64, floor())
                .prop_map(|(a, b, f)| json!({"type": "thompson_beta", "prior_alpha": a, "prior_beta": b, "floor": f})),
            (-1e6..1e6f64, 1e-6..1e6f64, floor()).prop_map(
                |(m, v, f)| json!({"type": "thompson_gaussian", "prior_mean": m, "prior_variance": v, "floor": f})
            ),
        ];
        let features = prop::collection::vec(
            prop_oneof![
                Just(json!({"type": "numeric"})),
                prop::collection::vec("[a-z]{1,4}", 1..4)
                    .prop_map(|levels| json!({"type": "categorical", "levels": levels})),
            ],
            1..4,
        );
        let policy_and_context = prop_oneof![(plain, Just(Vec::new())), (contextual, features),];
        (
            policy_and_context,
            prop::option::of(0.0..0.99f64),
            any::<u64>(),
            prop::option::of(0.0..=1.0f64),
        )
            .prop_map(move |((policy, features), control, seed, default)| {
                let variants: Vec<Value> = (0..n).map(|i| json!({"name": format!("v{i}")})).collect();
                let context: Vec<Value> = features
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut f)| {
                        f["name"] = json!(format!("f{i}"));
                        f
                    })
                    .collect();
                let mut spec = json!({
                    "variants": variants,
                    "policy": policy,
                    "context": context,
                    "seed": seed,
                    "reward": {"kind": "binary", "min": 0.0, "max": 1.0, "default": default, "window_seconds": 600},
                });
                if let Some(share) = control {
                    spec["control"] = json!({"variant": "v0", "share": share});
                }
                spec
            })
    })
}

/// A context that fits every feature of `spec`.
fn fitting_context(spec: &Value, x: f64) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for f in spec["context"].as_array().into_iter().flatten() {
        let value = match f.get("levels") {
            Some(levels) => levels[0].clone(),
            None => json!(x),
        };
        out.insert(f["name"].as_str().expect("named").to_string(), value);
    }
    out
}

fn replace_somewhere(doc: &mut Value, pick: usize, replacement: Value) {
    fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
        out.push(prefix.clone());
        match v {
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
                prefix.push(json!(i));
                paths(x, prefix, out);
                prefix.pop();
            }),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                prefix.push(json!(k));
                paths(x, prefix, out);
                prefix.pop();
            }),
            _ => {}
        }
    }
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let mut at = doc;
    for step in &all[pick % all.len()] {
        at = match step {
            Value::String(k) => &mut at[k.as_str()],
            i => &mut at[i.as_u64().expect("index") as usize],
        };
    }
    *at = replacement;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

/// A contextual deployment that has made some decisions, for the feedback properties.
struct Fixture {
    _dir: tempfile::TempDir,
    deployment: Deployment,
    decisions: Vec<String>,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = DeploymentSpec::from_json(&json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "none"}],
        "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
        "context": [{"name": "age", "type": "numeric"}, {"name": "segment", "type": "categorical", "levels": ["new", "loyal"]}],
        "control": {"variant": "none", "share": 0.1},
        "reward": {"kind": "continuous", "min": -10.0, "max": 100.0, "default": null, "window_seconds": 3600}
    }))
    .expect("valid fixture");
    let deployment = Deployment::open("props", spec, 1, dir.path(), Durability::Os).expect("open");
    let rt = runtime();
    let context = json!({"age": 30, "segment": "new"});
    let decisions = (0..32)
        .map(|i| {
            rt.block_on(deployment.decide(Some(&format!("u{i}")), context.as_object()))
                .expect("decide")
                .0
                .decision_id
        })
        .collect();
    Fixture {
        _dir: dir,
        deployment,
        decisions,
        rt,
    }
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Any JSON document as a spec: parsed and validated, or refused with the problems listed.
    #[test]
    fn arbitrary_specs_are_refused_as_the_callers_fault(doc in any_json()) {
        if let Err(e) = DeploymentSpec::from_json(&doc) {
            prop_assert!(!e.kind().is_server_fault(), "{:?}: {}", e.kind(), e);
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Any deployment name: accepted only when it is a safe folder name and URL segment.
    #[test]
    fn arbitrary_names(name in ".{0,20}") {
        match validate_name(&name) {
            Ok(()) => prop_assert!(!name.contains('/') && !name.contains("..") && !name.is_empty()),
            Err(e) => prop_assert!(!e.kind().is_server_fault()),
        }
    }

    /// A valid spec with any one value in it replaced by an arbitrary one.
    #[test]
    fn valid_specs_with_one_value_replaced(spec in valid_spec(), pick in any::<usize>(), replacement in any_json()) {
        let mut doc = spec;
        replace_somewhere(&mut doc, pick, replacement);
        if let Err(e) = DeploymentSpec::from_json(&doc) {
            prop_assert!(!e.kind().is_server_fault(), "{:?}: {}", e.kind(), e);
        }
    }

    /// Generated valid specs validate, survive a JSON round trip unchanged, open as an engine
    /// and decide on a fitting context with a propensity in (0, 1].
    #[test]
    fn valid_specs_round_trip_and_decide(spec in valid_spec(), x in -1e6..1e6f64, unit in prop::option::of("[a-z0-9]{1,8}")) {
        let parsed = DeploymentSpec::from_json(&spec).map_err(|e| TestCaseError::fail(format!("{e}: {spec}")))?;
        let again = DeploymentSpec::from_json(&serde_json::to_value(&parsed).expect("serialise")).expect("re-parse");
        prop_assert_eq!(&again, &parsed);
        let dir = tempfile::tempdir().expect("tmp");
        let deployment = Deployment::open("props", parsed, 1, dir.path(), Durability::Os).expect("a valid spec opens");
        let context = fitting_context(&spec, x);
        let (out, _) = runtime()
            .block_on(deployment.decide(unit.as_deref(), Some(&context)))
            .map_err(|e| TestCaseError::fail(format!("a valid spec decides: {e}: {spec}")))?;
        prop_assert!(out.propensity > 0.0 && out.propensity <= 1.0, "propensity {} for {}", out.propensity, spec);
        deployment.close();
    }

    /// Fixed weights of any finite size: refused with a message, or every action of positive
    /// weight is chosen with a positive propensity (an overflowing sum once gave 0 to all).
    #[test]
    fn fixed_weights_of_any_size(weights in prop::collection::vec(
        prop_oneof![any::<f64>().prop_filter("finite", |w| w.is_finite()), Just(f64::MAX), Just(0.0), 0.0..10.0f64], 1..4))
    {
        let variants: Vec<Value> = (0..weights.len()).map(|i| json!({"name": format!("v{i}")})).collect();
        let spec = json!({"variants": variants, "policy": {"type": "fixed_weights", "weights": weights}});
        match DeploymentSpec::from_json(&spec) {
            Err(e) => prop_assert!(!e.kind().is_server_fault() && !e.to_string().is_empty()),
            Ok(parsed) => {
                let dir = tempfile::tempdir().expect("tmp");
                let deployment = Deployment::open("w", parsed, 1, dir.path(), Durability::Os).expect("open");
                let rt = runtime();
                for i in 0..8 {
                    let (out, _) = rt.block_on(deployment.decide(Some(&format!("u{i}")), None)).expect("decide");
                    prop_assert!(out.propensity > 0.0 && out.propensity <= 1.0, "propensity {} for {:?}", out.propensity, weights);
                }
                deployment.close();
            }
        }
    }

    /// Arbitrary contexts sent to a contextual deployment: decided or refused as the caller's fault.
    #[test]
    fn arbitrary_contexts(context in prop::option::of(prop::collection::btree_map(
        prop::sample::select(vec!["age", "segment", "other"]), any_json(), 0..4)), unit in prop::option::of(".{0,8}"))
    {
        let f = &*FIXTURE;
        let context: Option<serde_json::Map<String, Value>> =
            context.map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        match f.rt.block_on(f.deployment.decide(unit.as_deref(), context.as_ref())) {
            Ok((out, _)) => prop_assert!(out.propensity > 0.0 && out.propensity <= 1.0),
            Err(e) => prop_assert!(!e.kind().is_server_fault(), "{:?}: {}", e.kind(), e),
        }
    }

    /// Any JSON body as a feedback event: a RewardIn or a parse error; what parses is recorded
    /// or refused as the caller's fault, for real decision ids and made-up ones alike.
    #[test]
    fn arbitrary_feedback(
        doc in any_json(),
        real in prop::collection::vec((any::<usize>(), prop_oneof![any::<f64>(), -20.0..120.0f64, Just(1e308)]), 0..4),
        made_up in prop::option::of(".{0,40}"),
    ) {
        let f = &*FIXTURE;
        let mut items: Vec<RewardIn> = serde_json::from_value::<RewardIn>(doc).into_iter().collect();
        for (i, reward) in real {
            // JSON cannot carry NaN or infinity; what serde reads is finite.
            let reward = if reward.is_finite() { reward } else { 0.5 };
            items.push(RewardIn { decision_id: f.decisions[i % f.decisions.len()].clone(), reward });
        }
        if let Some(id) = made_up {
            items.push(RewardIn { decision_id: id, reward: 1.0 });
        }
        for item in &items {
            let text = serde_json::to_string(item).expect("serialise");
            prop_assert_eq!(&serde_json::from_str::<RewardIn>(&text).expect("round trip"), item);
        }
        let (results, _) = f.rt.block_on(f.deployment.feedback(&items)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(results.len(), items.len());
        for r in results {
            if let Err(e) = r {
                prop_assert!(!e.kind().is_server_fault(), "{:?}: {}", e.kind(), e);
            }
        }
    }
}
