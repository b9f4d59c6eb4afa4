//! The e-mail promotion world: a population of restaurant customers and K promotions whose
//! conversion probability depends on who receives them.
//!
//! Each customer has recency/frequency/monetary-style features, tenure, age, e-mail open
//! rate, discount affinity, device, region and loyalty tier (10 features). The log-odds of
//! converting on promotion `a` are `base + w_a . z(x)`, where `z` standardises the numeric
//! features and one-hot encodes the categorical ones, and each promotion appeals to a
//! different segment (lapsed customers, deal seekers, big spenders, app users, loyal
//! regulars). `base` is calibrated so the average conversion under uniformly random
//! promotions hits the requested rate.
//!
//! [`World::new`] is keel's own world (the flagship's), with the promotions' appeal fixed by
//! hand; [`World::drawn`] draws the appeal from the seed too, so studies can run over several
//! different worlds; [`World::drifted`] is the same customers after the appeal shifted (a
//! season, a competitor's offer), for learners that must follow a changing world;
//! [`crate::newpromo`] gives promotions features and adds one during the campaign.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde_json::json;

pub const DEVICES: [&str; 3] = ["ios", "android", "web"];
pub const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
pub const LOYALTY: [&str; 3] = ["bronze", "silver", "gold"];
pub const PROMOTIONS: [&str; 8] = [
    "winback_voucher",
    "half_price_weekday",
    "family_feast",
    "app_exclusive",
    "free_dessert",
    "lunch_combo",
    "birthday_treat",
    "double_points",
];

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub recency_days: f64,
    pub visits_per_month: f64,
    pub avg_spend: f64,
    pub tenure_months: f64,
    pub age: f64,
    pub open_rate: f64,
    pub discount_affinity: f64,
    pub device: usize,
    pub region: usize,
    pub loyalty: usize,
}

impl Customer {
    /// The context as keel's decide API takes it.
    pub fn context(&self) -> serde_json::Value {
        json!({
            "recency_days": self.recency_days,
            "visits_per_month": self.visits_per_month,
            "avg_spend": self.avg_spend,
            "tenure_months": self.tenure_months,
            "age": self.age,
            "open_rate": self.open_rate,
            "discount_affinity": self.discount_affinity,
            "device": DEVICES[self.device],
            "region": REGIONS[self.region],
            "loyalty": LOYALTY[self.loyalty],
        })
    }

    /// The context vector keel's policies see: the numeric features as given, then each
    /// categorical one-hot over its levels, in [`context_spec`] order (what keel-experiments'
    /// `encode_context` makes of [`Customer::context`]): 17 numbers.
    pub fn features(&self) -> Vec<f64> {
        let mut x = vec![
            self.recency_days,
            self.visits_per_month,
            self.avg_spend,
            self.tenure_months,
            self.age,
            self.open_rate,
            self.discount_affinity,
        ];
        x.extend((0..3).map(|i| f64::from(u8::from(self.device == i))));
        x.extend((0..4).map(|i| f64::from(u8::from(self.region == i))));
        x.extend((0..3).map(|i| f64::from(u8::from(self.loyalty == i))));
        x
    }

    /// Standardised numeric features followed by one-hot categories.
    pub(crate) fn z(&self) -> Vec<f64> {
        let mut z = vec![
            (self.recency_days.ln_1p() - 3.0) / 1.0,
            (self.visits_per_month - 2.0) / 1.5,
            (self.avg_spend.ln() - 3.2) / 0.5,
            (self.tenure_months - 24.0) / 14.0,
            (self.age - 40.0) / 12.0,
            (self.open_rate - 0.3) / 0.15,
            (self.discount_affinity - 0.5) / 0.25,
        ];
        z.extend((0..3).map(|i| f64::from(u8::from(self.device == i))));
        z.extend((0..4).map(|i| f64::from(u8::from(self.region == i))));
        z.extend((0..3).map(|i| f64::from(u8::from(self.loyalty == i))));
        z
    }
}

/// The deployment's context definition matching [`Customer::context`].
pub fn context_spec() -> serde_json::Value {
    json!([
        {"type": "numeric", "name": "recency_days"},
        {"type": "numeric", "name": "visits_per_month"},
        {"type": "numeric", "name": "avg_spend"},
        {"type": "numeric", "name": "tenure_months"},
        {"type": "numeric", "name": "age"},
        {"type": "numeric", "name": "open_rate"},
        {"type": "numeric", "name": "discount_affinity"},
        {"type": "categorical", "name": "device", "levels": DEVICES},
        {"type": "categorical", "name": "region", "levels": REGIONS},
        {"type": "categorical", "name": "loyalty", "levels": LOYALTY},
    ])
}

pub struct World {
    pub customers: Vec<Customer>,
    pub promotions: Vec<String>,
    pub(crate) weights: Vec<Vec<f64>>,
    /// Per-promotion shift of the log-odds (0 until the appeal drifts).
    pub(crate) offsets: Vec<f64>,
    pub(crate) base: f64,
    /// Conversion probability of every (customer, promotion).
    pub p: Vec<Vec<f64>>,
}

/// Log-odds before the intercept, `offset_a + w_a . z`, of every (customer, promotion).
pub(crate) fn logits(zs: &[Vec<f64>], weights: &[Vec<f64>], offsets: &[f64]) -> Vec<Vec<f64>> {
    zs.iter()
        .map(|z| {
            weights
                .iter()
                .zip(offsets)
                .map(|(w, o)| o + w.iter().zip(z).map(|(a, b)| a * b).sum::<f64>())
                .collect()
        })
        .collect()
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl World {
    /// Builds a world of `n` customers and `k` promotions (2..=8) whose uniform-random
    /// conversion rate is `base_rate`; the promotions' appeal is keel's hand-written one.
    pub fn new(n: usize, k: usize, base_rate: f64, seed: u64) -> anyhow::Result<World> {
        World::build(n, k, base_rate, seed, false)
    }

    /// Like [`World::new`], but the promotions' appeal is drawn from `seed` too: which `k` of the
    /// eight segment templates, in which order, each scaled by a factor in [0.5, 1.5], with
    /// Normal(0, 0.3) noise on every weight and a Normal(0, 0.3) appeal of its own. Different
    /// seeds give different worlds (different best promotions, segments, oracle gains).
    pub fn drawn(n: usize, k: usize, base_rate: f64, seed: u64) -> anyhow::Result<World> {
        World::build(n, k, base_rate, seed, true)
    }

    fn build(n: usize, k: usize, base_rate: f64, seed: u64, drawn: bool) -> anyhow::Result<World> {
        anyhow::ensure!(
            (2..=PROMOTIONS.len()).contains(&k),
            "promotions must be 2..={}",
            PROMOTIONS.len()
        );
        anyhow::ensure!(base_rate > 0.0 && base_rate < 0.5, "base rate must be in (0, 0.5)");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spend = LogNormal::new(3.2_f64, 0.5)?;
        let age = Normal::new(40.0_f64, 12.0)?;
        let customers: Vec<Customer> = (0..n)
            .map(|i| {
                let loyalty = [0usize, 0, 0, 1, 1, 2][rng.random_range(0..6)];
                Customer {
                    id: format!("cust-{i:07}"),
                    recency_days: (-(rng.random::<f64>().max(1e-9)).ln() * 30.0).min(365.0),
                    visits_per_month: (rng.random::<f64>() * 4.0 + loyalty as f64).round(),
                    avg_spend: spend.sample(&mut rng),
                    tenure_months: rng.random_range(1.0..72.0_f64).round(),
                    age: age.sample(&mut rng).clamp(18.0, 85.0).round(),
                    open_rate: rng.random_range(0.05..0.6),
                    discount_affinity: rng.random::<f64>(),
                    device: [0usize, 0, 1, 1, 1, 2][rng.random_range(0..6)],
                    region: rng.random_range(0..4),
                    loyalty,
                }
            })
            .collect();
        // Segment appeal per promotion over z = [recency, frequency, spend, tenure, age,
        // open, discount, ios, android, web, N, S, E, W, bronze, silver, gold].
        #[rustfmt::skip]
        let templates: [[f64; 17]; 8] = [
            // winback: lapsed, infrequent customers
            [ 1.4, -0.6,  0.0, 0.0,  0.0, 0.3, 0.2,  0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0,  0.3, 0.0, -0.4],
            // half price weekday: deal seekers with small baskets
            [ 0.0,  0.0, -0.8, 0.0, -0.2, 0.3, 1.4,  0.0, 0.0, 0.0,  0.0, 0.2, 0.0, 0.0,  0.2, 0.0, -0.2],
            // family feast: big spenders, older
            [-0.2,  0.2,  1.3, 0.0,  0.5, 0.3, -0.4, 0.0, 0.0, 0.0,  0.0, 0.0, 0.3, 0.0,  0.0, 0.1, 0.2],
            // app exclusive: mobile users, younger
            [ 0.0,  0.3,  0.0, 0.0, -0.8, 0.3, 0.2,  0.9, 0.7, -1.2, 0.0, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0],
            // free dessert: loyal regulars
            [-0.8,  1.0,  0.0, 0.5,  0.0, 0.3, -0.2, 0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0, -0.5, 0.1, 0.8],
            // lunch combo: frequent, mid spend, region west
            [-0.3,  0.6, -0.3, 0.0,  0.0, 0.3, 0.3,  0.0, 0.0, 0.0, -0.2, 0.0, 0.0, 0.8,  0.0, 0.0, 0.0],
            // birthday treat: older, long tenure
            [ 0.0,  0.0,  0.0, 0.9,  0.7, 0.3, 0.0,  0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0,  0.0, 0.2, 0.2],
            // double points: silver tier, frequent
            [-0.2,  0.5,  0.2, 0.2,  0.0, 0.3, 0.0,  0.0, 0.0, 0.0,  0.0, 0.0, 0.0, 0.0, -0.3, 0.8, 0.3],
        ];
        let (weights, promotions, offsets): (Vec<Vec<f64>>, Vec<String>, Vec<f64>) = if drawn {
            // A separate stream, so the customers of a drawn world equal those of `new`.
            let mut arng = ChaCha8Rng::seed_from_u64(seed ^ 0x05ee_da99_ea1f_00d5);
            let noise = Normal::new(0.0_f64, 0.3)?;
            let mut order: Vec<usize> = (0..PROMOTIONS.len()).collect();
            order.shuffle(&mut arng);
            order.truncate(k);
            let weights = order
                .iter()
                .map(|t| {
                    let scale = arng.random_range(0.5..1.5);
                    templates[*t]
                        .iter()
                        .map(|w| w * scale + noise.sample(&mut arng))
                        .collect()
                })
                .collect();
            let offsets = (0..k).map(|_| noise.sample(&mut arng)).collect();
            (
                weights,
                order.iter().map(|t| PROMOTIONS[*t].to_string()).collect(),
                offsets,
            )
        } else {
            (
                templates[..k].iter().map(|t| t.to_vec()).collect(),
                PROMOTIONS[..k].iter().map(|s| s.to_string()).collect(),
                vec![0.0; k],
            )
        };
        let zs: Vec<Vec<f64>> = customers.iter().map(Customer::z).collect();
        let logits = logits(&zs, &weights, &offsets);
        // Calibrate the intercept by bisection so the uniform policy converts at base_rate.
        let uniform_rate = |b: f64| {
            logits
                .iter()
                .map(|l| l.iter().map(|v| sigmoid(b + v)).sum::<f64>() / k as f64)
                .sum::<f64>()
                / n.max(1) as f64
        };
        let (mut lo, mut hi) = (-15.0, 5.0);
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if uniform_rate(mid) < base_rate {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let base = (lo + hi) / 2.0;
        let p = logits
            .iter()
            .map(|l| l.iter().map(|v| sigmoid(base + v)).collect())
            .collect();
        Ok(World {
            customers,
            promotions,
            weights,
            offsets,
            base,
            p,
        })
    }

    /// The same customers after the promotions' appeal shifted, drawn from `seed`: the promotion
    /// that converted best on average loses 1.5 on the log-odds (a competitor's offer undercuts
    /// it), another promotion gains 1.0 and a third swaps its segment for another promotion's
    /// (a season: what appealed to families now appeals to lapsed customers). Each customer's
    /// best promotion changes for many customers, so a learner must forget to follow.
    pub fn drifted(&self, seed: u64) -> World {
        let k = self.k();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xd81f_7ed0_0000_0001);
        let (best, _) = self.best_single();
        let mut others: Vec<usize> = (0..k).filter(|a| *a != best).collect();
        others.shuffle(&mut rng);
        let mut weights = self.weights.clone();
        let mut offsets = self.offsets.clone();
        offsets[best] -= 1.5;
        offsets[others[0]] += 1.0;
        if others.len() >= 2 {
            weights[others[1]] = self.weights[best].clone();
        }
        let zs: Vec<Vec<f64>> = self.customers.iter().map(Customer::z).collect();
        let p = logits(&zs, &weights, &offsets)
            .iter()
            .map(|l| l.iter().map(|v| sigmoid(self.base + v)).collect())
            .collect();
        World {
            customers: self.customers.clone(),
            promotions: self.promotions.clone(),
            weights,
            offsets,
            base: self.base,
            p,
        }
    }

    /// This world for customers `0..at`, then [`drifted`](Self::drifted)`(seed)` for the rest: what
    /// a campaign that reaches its customers in order sees when the appeal shifts during it.
    pub fn shifting_at(&self, at: usize, seed: u64) -> World {
        let mut after = self.drifted(seed);
        for (i, row) in after.p.iter_mut().enumerate().take(at) {
            row.clone_from(&self.p[i]);
        }
        after
    }

    pub fn k(&self) -> usize {
        self.promotions.len()
    }

    /// Expected conversion rate of each single promotion sent to everyone.
    pub fn single_rates(&self) -> Vec<f64> {
        let n = self.p.len().max(1) as f64;
        (0..self.k())
            .map(|a| self.p.iter().map(|p| p[a]).sum::<f64>() / n)
            .collect()
    }

    /// Expected rate of uniformly random promotions.
    pub fn uniform_rate(&self) -> f64 {
        self.single_rates().iter().sum::<f64>() / self.k() as f64
    }

    /// Expected rate of the oracle that knows every customer's best promotion.
    pub fn oracle_rate(&self) -> f64 {
        let n = self.p.len().max(1) as f64;
        self.p
            .iter()
            .map(|p| p.iter().copied().fold(0.0, f64::max))
            .sum::<f64>()
            / n
    }

    pub fn best_single(&self) -> (usize, f64) {
        self.single_rates()
            .into_iter()
            .enumerate()
            .fold((0, 0.0), |best, (a, r)| if r > best.1 { (a, r) } else { best })
    }

    /// Describes the world (for the report).
    pub fn describe(&self) -> serde_json::Value {
        json!({
            "customers": self.customers.len(),
            "promotions": self.promotions,
            "intercept": self.base,
            "features": 10,
            "weights_nonzero": self.weights.iter().map(|w| w.iter().filter(|x| **x != 0.0).count()).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_and_heterogeneous() {
        let w = World::new(20_000, 5, 0.025, 1).expect("world");
        assert!((w.uniform_rate() - 0.025).abs() < 1e-4, "{}", w.uniform_rate());
        let (_, best) = w.best_single();
        // Personalisation must matter: the oracle beats the best single promotion clearly.
        assert!(w.oracle_rate() > best * 1.3, "oracle {} best {}", w.oracle_rate(), best);
        assert!(best < w.oracle_rate());
        let again = World::new(20_000, 5, 0.025, 1).expect("world");
        assert_eq!(w.p[17], again.p[17], "deterministic under a seed");
    }

    #[test]
    fn drawn_worlds_differ_by_seed_and_repeat_under_one() {
        let worlds: Vec<World> = (1..=5)
            .map(|s| World::drawn(5_000, 5, 0.025, s).expect("world"))
            .collect();
        for (i, w) in worlds.iter().enumerate() {
            assert!(
                (w.uniform_rate() - 0.025).abs() < 1e-4,
                "world {i}: {}",
                w.uniform_rate()
            );
            let (_, best) = w.best_single();
            assert!(
                w.oracle_rate() > best * 1.2,
                "world {i}: oracle {} best {best}",
                w.oracle_rate()
            );
            let again = World::drawn(5_000, 5, 0.025, i as u64 + 1).expect("world");
            assert!(w.p == again.p, "world {i} is a function of its seed");
            assert_eq!(w.promotions, again.promotions);
        }
        for i in 0..5 {
            for j in i + 1..5 {
                assert_ne!(worlds[i].p[0], worlds[j].p[0], "worlds {i} and {j} are the same");
            }
        }
        // keel's own world is not one of them, but has the same customers under the same seed.
        let own = World::new(5_000, 5, 0.025, 1).expect("world");
        assert_eq!(own.customers[9].features(), worlds[0].customers[9].features());
        assert_ne!(own.p[9], worlds[0].p[9]);
    }

    #[test]
    fn drift_moves_the_best_promotion_and_keeps_the_customers() {
        let w = World::drawn(20_000, 5, 0.025, 3).expect("world");
        let d = w.drifted(3);
        assert_eq!(d.p.len(), w.p.len());
        assert!(w.drifted(3).p == d.p, "the drift is a function of its seed");
        let (before, _) = w.best_single();
        let (after, _) = d.best_single();
        assert_ne!(before, after, "the best single promotion changes");
        let best = |p: &Vec<f64>| {
            p.iter()
                .enumerate()
                .fold((0, 0.0), |b, (a, v)| if *v > b.1 { (a, *v) } else { b })
                .0
        };
        let changed = w.p.iter().zip(&d.p).filter(|(a, b)| best(a) != best(b)).count();
        assert!(
            changed * 4 > w.p.len(),
            "only {changed} of {} customers changed their best promotion",
            w.p.len()
        );
        // The old oracle's choices lose much of the new oracle's lift over uniform.
        let stale: f64 = w.p.iter().zip(&d.p).map(|(a, b)| b[best(a)]).sum::<f64>() / w.p.len() as f64;
        let share = (stale - d.uniform_rate()) / (d.oracle_rate() - d.uniform_rate());
        assert!(share < 0.7, "the old oracle keeps {share} of the new lift");
    }

    #[test]
    fn a_shift_splices_the_two_worlds_at_the_customer() {
        let w = World::drawn(1_000, 4, 0.025, 8).expect("world");
        let s = w.shifting_at(600, 8);
        let d = w.drifted(8);
        assert!(s.p[..600] == w.p[..600] && s.p[600..] == d.p[600..]);
    }

    #[test]
    fn features_are_the_context_as_keel_encodes_it() {
        let w = World::new(10, 5, 0.025, 2).expect("world");
        let c = &w.customers[3];
        let ctx = c.context();
        let mut encoded = Vec::new();
        for f in context_spec().as_array().expect("spec") {
            let v = &ctx[f["name"].as_str().expect("name")];
            match f["levels"].as_array() {
                Some(levels) => encoded.extend(levels.iter().map(|l| f64::from(u8::from(l == v)))),
                None => encoded.push(v.as_f64().expect("number")),
            }
        }
        assert_eq!(c.features(), encoded);
    }
}
