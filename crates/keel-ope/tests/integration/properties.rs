//! Property tests of the estimators on synthetic data whose true policy value is known.

use keel_ope::{
    ActionDist, Bootstrap, Estimator, EstimatorKind, IntervalMethod, LoggedBandit, OpeError, dm, dr, dr_os, evaluate,
    ipw, sndr, snipw, switch_dr,
};
use proptest::prelude::*;

/// SplitMix64, for simulating logs from a proptest-chosen seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn categorical(&mut self, p: &[f64]) -> usize {
        let u = self.uniform();
        let mut acc = 0.0;
        for (a, pa) in p.iter().enumerate() {
            acc += pa;
            if u < acc {
                return a;
            }
        }
        p.len() - 1
    }
}

/// A probability vector over `k` actions from raw positive weights, each at least `floor`.
fn normalize(raw: &[f64], floor: f64) -> Vec<f64> {
    let s: f64 = raw.iter().sum();
    let k = raw.len() as f64;
    raw.iter().map(|r| floor + (1.0 - floor * k) * r / s).collect()
}

fn policy(k: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.01f64..1.0, k)
}

/// A context-free bandit problem: logging policy, evaluation policy and mean rewards.
#[derive(Debug, Clone)]
struct Problem {
    pi_b: Vec<f64>,
    pi_e: Vec<f64>,
    mu: Vec<f64>,
}

impl Problem {
    fn truth(&self) -> f64 {
        self.pi_e.iter().zip(&self.mu).map(|(p, m)| p * m).sum()
    }

    fn simulate(&self, n: usize, rng: &mut Rng) -> LoggedBandit {
        let mut actions = Vec::with_capacity(n);
        let mut rewards = Vec::with_capacity(n);
        let mut props = Vec::with_capacity(n);
        for _ in 0..n {
            let a = rng.categorical(&self.pi_b);
            actions.push(a);
            rewards.push(if rng.uniform() < self.mu[a] { 1.0 } else { 0.0 });
            props.push(self.pi_b[a]);
        }
        LoggedBandit::new(self.pi_b.len(), actions, rewards, props).expect("valid synthetic log")
    }
}

fn problem() -> impl Strategy<Value = Problem> {
    (2usize..6).prop_flat_map(|k| {
        (policy(k), policy(k), prop::collection::vec(0.0f64..1.0, k)).prop_map(|(b, e, mu)| Problem {
            pi_b: normalize(&b, 0.05),
            pi_e: normalize(&e, 0.0),
            mu,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// IPW and DR are exactly unbiased: on a one-round log, the expectation over every
    /// (action, reward) outcome equals the true value, whatever q_hat is.
    #[test]
    fn ipw_and_dr_exactly_unbiased(p in problem(), q in prop::collection::vec(-1.0f64..2.0, 5)) {
        let k = p.pi_b.len();
        let pi_e = ActionDist::from_rows(std::slice::from_ref(&p.pi_e)).unwrap();
        let q_hat = ActionDist::from_rows(&[q[..k].to_vec()]).unwrap();
        let (mut e_ipw, mut e_dr) = (0.0, 0.0);
        for a in 0..k {
            for (r, pr) in [(1.0, p.mu[a]), (0.0, 1.0 - p.mu[a])] {
                let log = LoggedBandit::new(k, vec![a], vec![r], vec![p.pi_b[a]]).unwrap();
                e_ipw += p.pi_b[a] * pr * ipw(&log, &pi_e).unwrap().value;
                e_dr += p.pi_b[a] * pr * dr(&log, &pi_e, &q_hat).unwrap().value;
            }
        }
        prop_assert!((e_ipw - p.truth()).abs() < 1e-12, "{e_ipw} vs {}", p.truth());
        prop_assert!((e_dr - p.truth()).abs() < 1e-12, "{e_dr} vs {}", p.truth());
    }

    /// Over many simulated logs the mean IPW and SNIPW estimates are within a few standard
    /// errors of the truth (SNIPW's O(1/n) bias is far below that at n = 400).
    #[test]
    fn ipw_and_snipw_unbiased_by_simulation(p in problem(), seed in any::<u64>()) {
        let (reps, n) = (150, 400);
        let mut rng = Rng(seed);
        let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); n]).unwrap();
        let mut ipws = Vec::with_capacity(reps);
        let mut snipws = Vec::with_capacity(reps);
        for _ in 0..reps {
            let log = p.simulate(n, &mut rng);
            ipws.push(ipw(&log, &pi_e).unwrap().value);
            // SNIPW is undefined when no logged action has weight; skip those rare logs.
            match snipw(&log, &pi_e) {
                Ok(e) => snipws.push(e.value),
                Err(OpeError::ZeroWeights { .. }) => {}
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
        for (name, xs) in [("ipw", &ipws), ("snipw", &snipws)] {
            let (m, se) = keel_ope::mean_and_std_err(xs);
            prop_assert!((m - p.truth()).abs() <= 5.0 * se + 1e-3, "{name}: mean {m} truth {} se {se}", p.truth());
        }
    }

    /// Evaluating the logging policy itself: every weight is 1, so SNIPW (and IPW) equal the
    /// logged mean reward, even when the logging policy varies by round.
    #[test]
    fn snipw_of_logging_policy_is_mean_reward(seed in any::<u64>(), k in 2usize..6, n in 1usize..200) {
        let mut rng = Rng(seed);
        let mut rows = Vec::with_capacity(n);
        let (mut actions, mut rewards, mut props) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let raw: Vec<f64> = (0..k).map(|_| 0.01 + rng.uniform()).collect();
            let pi = normalize(&raw, 0.0);
            let a = rng.categorical(&pi);
            actions.push(a);
            rewards.push(rng.uniform() * 3.0 - 1.0);
            props.push(pi[a]);
            rows.push(pi);
        }
        let log = LoggedBandit::new(k, actions, rewards, props).unwrap();
        let pi_b = ActionDist::from_rows(&rows).unwrap();
        let mean = log.mean_reward();
        prop_assert!((snipw(&log, &pi_b).unwrap().value - mean).abs() < 1e-12);
        prop_assert!((ipw(&log, &pi_b).unwrap().value - mean).abs() < 1e-12);
    }

    /// When every logged reward equals q_hat of the logged action, the correction vanishes:
    /// DR = SNDR = DM.
    #[test]
    fn dr_equals_dm_when_rewards_equal_q_hat(p in problem(), seed in any::<u64>(), n in 1usize..100) {
        let k = p.pi_b.len();
        let mut rng = Rng(seed);
        let mut log = p.simulate(n, &mut rng);
        let q_rows: Vec<Vec<f64>> = (0..n).map(|_| (0..k).map(|_| rng.uniform()).collect()).collect();
        for i in 0..n {
            log.rewards[i] = q_rows[i][log.actions[i]];
        }
        let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); n]).unwrap();
        let q_hat = ActionDist::from_rows(&q_rows).unwrap();
        let v_dm = dm(&log, &pi_e, &q_hat).unwrap().value;
        prop_assert!((dr(&log, &pi_e, &q_hat).unwrap().value - v_dm).abs() < 1e-12);
        prop_assert!((sndr(&log, &pi_e, &q_hat).unwrap().value - v_dm).abs() < 1e-12);
    }

    /// DM with a constant reward model is that constant; intervals bracket the value.
    #[test]
    fn dm_of_constant_model_and_intervals(p in problem(), seed in any::<u64>(), c in -2.0f64..2.0) {
        let k = p.pi_b.len();
        let n = 50;
        let log = p.simulate(n, &mut Rng(seed));
        let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); n]).unwrap();
        let q_hat = ActionDist::from_rows(&vec![vec![c; k]; n]).unwrap();
        prop_assert!((dm(&log, &pi_e, &q_hat).unwrap().value - c).abs() < 1e-12);
        for e in evaluate(&log, &pi_e, Some(&q_hat)).unwrap() {
            prop_assert!(e.std_err >= 0.0 && e.ci_low <= e.value && e.value <= e.ci_high, "{e:?}");
            prop_assert_eq!(e.n, n);
        }
    }

    /// Clipping caps every weight: clipped IPW never exceeds the unclipped one on
    /// non-negative rewards, and with lambda = 0 it is 0.
    #[test]
    fn clipping_caps_weights(p in problem(), seed in any::<u64>(), lambda in 0.0f64..5.0) {
        let n = 60;
        let log = p.simulate(n, &mut Rng(seed));
        let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); n]).unwrap();
        let est = Estimator::new(EstimatorKind::Ipw);
        let full = est.estimate(&log, &pi_e, None).unwrap().value;
        let clipped = est.with_clipping(lambda).estimate(&log, &pi_e, None).unwrap().value;
        prop_assert!(clipped <= full + 1e-12);
        prop_assert_eq!(est.with_clipping(0.0).estimate(&log, &pi_e, None).unwrap().value, 0.0);
    }

    /// Switch-DR and DR-OS sit between DM and DR: with tau or lambda infinite they are DR,
    /// with 0 they are DM; Switch-DR at a tau above every weight is DR; DR-OS's shrunk weight
    /// is below both the weight and sqrt(lambda) / 2, so its correction is never larger than DR's
    /// row by row; and their diagnostics see the weights they use.
    #[test]
    fn switch_dr_and_dr_os_between_dm_and_dr(
        p in problem(),
        seed in any::<u64>(),
        q in prop::collection::vec(0.0f64..1.0, 5),
        lambda in 0.01f64..100.0,
    ) {
        let n = 80;
        let log = p.simulate(n, &mut Rng(seed));
        let k = p.pi_b.len();
        let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); n]).unwrap();
        let q_hat = ActionDist::from_rows(&vec![q[..k].to_vec(); n]).unwrap();
        let dm_v = dm(&log, &pi_e, &q_hat).unwrap().value;
        let dr_terms = Estimator::new(EstimatorKind::Dr).round_rewards(&log, &pi_e, Some(&q_hat)).unwrap();
        let dr_v = dr(&log, &pi_e, &q_hat).unwrap().value;
        prop_assert!((switch_dr(&log, &pi_e, &q_hat, f64::INFINITY).unwrap().value - dr_v).abs() < 1e-12);
        prop_assert!((switch_dr(&log, &pi_e, &q_hat, 0.0).unwrap().value - dm_v).abs() < 1e-12);
        prop_assert!((switch_dr(&log, &pi_e, &q_hat, 1e6).unwrap().value - dr_v).abs() < 1e-12);
        prop_assert!((dr_os(&log, &pi_e, &q_hat, f64::INFINITY).unwrap().value - dr_v).abs() < 1e-12);
        prop_assert!((dr_os(&log, &pi_e, &q_hat, 0.0).unwrap().value - dm_v).abs() < 1e-12);
        let os = Estimator::new(EstimatorKind::DrOs).with_lambda(lambda);
        let os_terms = os.round_rewards(&log, &pi_e, Some(&q_hat)).unwrap();
        let dm_terms = Estimator::new(EstimatorKind::Dm).round_rewards(&log, &pi_e, Some(&q_hat)).unwrap();
        for i in 0..n {
            let full = (dr_terms[i] - dm_terms[i]).abs();
            let shrunk = (os_terms[i] - dm_terms[i]).abs();
            prop_assert!(shrunk <= full + 1e-12, "row {i}: {shrunk} > {full}");
        }
        let w = os.estimate(&log, &pi_e, Some(&q_hat)).unwrap().diagnostics.weights.unwrap();
        prop_assert!(w.max <= lambda.sqrt() / 2.0 + 1e-12, "{w:?} lambda {lambda}");
        let raw = Estimator::new(EstimatorKind::Dr).estimate(&log, &pi_e, Some(&q_hat)).unwrap().diagnostics;
        prop_assert!(w.max <= raw.raw_weights.max + 1e-12);
        prop_assert_eq!(raw.weights.unwrap(), raw.raw_weights);
    }
}

/// Switch-DR and DR-OS by hand on three rounds (weights 0.4, 1.6 and 1.6).
#[test]
fn switch_dr_and_dr_os_by_hand() {
    let log = LoggedBandit::new(2, vec![0, 1, 1], vec![1.0, 0.0, 1.0], vec![0.5; 3]).unwrap();
    let pi_e = ActionDist::from_rows(&vec![vec![0.2, 0.8]; 3]).unwrap();
    let q = ActionDist::from_rows(&vec![vec![0.5, 0.25]; 3]).unwrap();
    let dm_i = 0.2 * 0.5 + 0.8 * 0.25; // 0.3
    // tau = 1: only round 1 (w = 0.4) keeps its correction 0.4 * (1 - 0.5).
    let s = switch_dr(&log, &pi_e, &q, 1.0).unwrap();
    assert!((s.value - (dm_i + 0.4 * 0.5 / 3.0)).abs() < 1e-15, "{s:?}");
    assert_eq!(s.diagnostics.weights.unwrap().max, 0.4);
    // lambda = 4: w' = 4w / (w^2 + 4): 0.4 -> 1.6 / 4.16, 1.6 -> 6.4 / 6.56.
    let e = dr_os(&log, &pi_e, &q, 4.0).unwrap();
    let (a, b) = (1.6 / 4.16, 6.4 / 6.56);
    let want = dm_i + (a * 0.5 + b * (0.0 - 0.25) + b * (1.0 - 0.25)) / 3.0;
    assert!((e.value - want).abs() < 1e-15, "{} vs {want}", e.value);
    let err = Estimator::new(EstimatorKind::SwitchDr)
        .with_lambda(-1.0)
        .estimate(&log, &pi_e, Some(&q))
        .unwrap_err();
    assert_eq!(err.code(), "ope.invalid_parameter");
}

#[test]
fn positions_index_the_position_axis() {
    // Two actions, two positions; pi_e differs by position.
    let mut log = LoggedBandit::new(2, vec![0, 0, 1], vec![1.0, 1.0, 1.0], vec![0.5, 0.5, 0.5]).unwrap();
    log.positions = Some(vec![0, 1, 1]);
    let per_round = vec![vec![1.0, 0.25], vec![0.0, 0.75]]; // [action][position]
    let pi_e = ActionDist::tiled(3, &per_round).unwrap();
    // weights: round 1 pi(0|pos0)=1 -> 2; round 2 pi(0|pos1)=0.25 -> 0.5; round 3 pi(1|pos1)=0.75 -> 1.5
    let e = ipw(&log, &pi_e).unwrap();
    assert!((e.value - (2.0 + 0.5 + 1.5) / 3.0).abs() < 1e-15);
    assert!((snipw(&log, &pi_e).unwrap().value - 1.0).abs() < 1e-15);
    // DM averages q_hat under pi_e at the logged position.
    let q_hat = ActionDist::tiled(3, &[vec![0.1, 0.2], vec![0.3, 0.4]]).unwrap();
    let expected = (0.1 + 2.0 * (0.25 * 0.2 + 0.75 * 0.4)) / 3.0;
    assert!((dm(&log, &pi_e, &q_hat).unwrap().value - expected).abs() < 1e-15);

    // A logged position beyond the axis, or a position axis without logged positions, is refused.
    log.positions = Some(vec![0, 2, 1]);
    let err = ipw(&log, &pi_e).unwrap_err();
    assert!(err.to_string().contains("round 2"), "{err}");
    log.positions = None;
    assert_eq!(ipw(&log, &pi_e).unwrap_err().code(), "ope.shape_mismatch");
}

#[test]
fn input_errors_have_codes() {
    let log = LoggedBandit::new(2, vec![0, 1], vec![1.0, 0.0], vec![0.5, 0.5]).unwrap();
    let pi_e = ActionDist::from_rows(&[vec![0.5, 0.5], vec![0.5, 0.5]]).unwrap();
    let short = ActionDist::from_rows(&[vec![0.5, 0.5]]).unwrap();
    assert_eq!(ipw(&log, &short).unwrap_err().code(), "ope.shape_mismatch");
    let bad = ActionDist::from_rows(&[vec![0.5, 0.5], vec![0.9, 0.5]]).unwrap();
    let err = ipw(&log, &bad).unwrap_err();
    assert_eq!(err.code(), "ope.invalid_action_dist");
    assert!(err.to_string().contains("round 2"), "{err}");
    let err = Estimator::new(EstimatorKind::Dr)
        .estimate(&log, &pi_e, None)
        .unwrap_err();
    assert_eq!(err.code(), "ope.missing_reward_model");
    let never = ActionDist::from_rows(&[vec![0.0, 1.0], vec![1.0, 0.0]]).unwrap();
    assert_eq!(snipw(&log, &never).unwrap_err().code(), "ope.zero_weights");
    let err = Estimator::new(EstimatorKind::Ipw)
        .with_clipping(f64::NAN)
        .estimate(&log, &pi_e, None)
        .unwrap_err();
    assert_eq!(err.code(), "ope.invalid_parameter");
}

#[test]
fn evaluate_reports_what_applies() {
    let log = LoggedBandit::new(2, vec![0, 1, 1], vec![1.0, 0.0, 1.0], vec![0.5; 3]).unwrap();
    let pi_e = ActionDist::from_rows(&vec![vec![0.2, 0.8]; 3]).unwrap();
    let names: Vec<_> = evaluate(&log, &pi_e, None).unwrap().iter().map(|e| e.name).collect();
    assert_eq!(names, ["ipw", "snipw"]);
    let q = ActionDist::from_rows(&vec![vec![0.5, 0.5]; 3]).unwrap();
    let names: Vec<_> = evaluate(&log, &pi_e, Some(&q))
        .unwrap()
        .iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["dm", "ipw", "snipw", "dr", "sndr", "switch-dr", "dr-os"]);
}

#[test]
fn normal_interval_is_value_plus_minus_1_96_se() {
    let log = LoggedBandit::new(2, vec![0, 1, 0, 1], vec![1.0, 0.0, 0.0, 1.0], vec![0.5; 4]).unwrap();
    let pi_e = ActionDist::from_rows(&vec![vec![1.0, 0.0]; 4]).unwrap();
    let e = ipw(&log, &pi_e).unwrap();
    // terms: 2, 0, 0, 0 -> mean 0.5, sample sd 1, se 0.5
    assert_eq!(e.value, 0.5);
    assert!((e.std_err - 0.5).abs() < 1e-15);
    assert!((e.ci_low - (0.5 - 1.959_963_984_540_054 * 0.5)).abs() < 1e-15);
    assert_eq!(e.interval, IntervalMethod::Normal);
}

#[test]
fn bootstrap_interval_is_seeded() {
    let p = Problem {
        pi_b: vec![0.5, 0.3, 0.2],
        pi_e: vec![0.1, 0.1, 0.8],
        mu: vec![0.2, 0.5, 0.7],
    };
    let log = p.simulate(300, &mut Rng(3));
    let pi_e = ActionDist::from_rows(&vec![p.pi_e.clone(); 300]).unwrap();
    let cfg = Bootstrap {
        n_bootstrap_samples: 500,
        alpha: 0.05,
        seed: 9,
    };
    let est = Estimator::new(EstimatorKind::Snipw);
    let a = est.estimate_bootstrap(&log, &pi_e, None, &cfg).unwrap();
    let b = est.estimate_bootstrap(&log, &pi_e, None, &cfg).unwrap();
    assert_eq!(a, b);
    let normal = est.estimate(&log, &pi_e, None).unwrap();
    assert_eq!(a.value, normal.value);
    assert!(a.ci_low < a.value && a.value < a.ci_high);
    // Bootstrap and normal intervals agree roughly at n = 300.
    assert!((a.std_err - normal.std_err).abs() < 0.25 * normal.std_err);
    let c = est
        .estimate_bootstrap(&log, &pi_e, None, &Bootstrap { seed: 10, ..cfg })
        .unwrap();
    assert_ne!(a.ci_low, c.ci_low);
}
