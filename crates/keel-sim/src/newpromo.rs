//! A promotion added during the campaign, and promotions that carry features.
//!
//! [`with_new_promotion`] takes a drawn world ([`World::drawn`]) and gives every promotion two
//! features a marketer would write down: its `segment` (the audience it was designed for, one
//! of the eight templates) and its `value` (how generous it is, in [0, 1]). A promotion's own
//! appeal follows its value (`+1.5` log-odds per unit of value, on top of the drawn world's),
//! and one promotion more is appended: a more generous version of the promotion that converts
//! best (the same segment and appeal, value `+0.35`), which is the best promotion for many
//! customers. A campaign offers the first `k` promotions, then all `k + 1` from some customer
//! on; a learner that knows the promotions' features can tell what the new one is like before
//! sending it to anyone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::world::{Customer, PROMOTIONS, World, logits, sigmoid};

/// Log-odds gained per unit of a promotion's value.
pub const VALUE_EFFECT: f64 = 1.5;
/// How much more generous the new promotion is than the one it varies.
pub const NEW_VALUE_STEP: f64 = 0.35;

/// A world of `k + 1` promotions (the last one is the new one) with every promotion's features.
pub struct NewPromotionWorld {
    pub world: World,
    /// `{"segment": ..., "value": ...}` of every promotion, as a deployment's variants carry them.
    pub features: Vec<serde_json::Value>,
    /// The promotion the new one is a more generous version of.
    pub sibling: usize,
}

impl NewPromotionWorld {
    /// The index of the new promotion.
    pub fn new_promotion(&self) -> usize {
        self.world.k() - 1
    }

    /// Every promotion's features as keel encodes them under [`action_features_spec`]: the
    /// segment one-hot over the eight templates, then the value.
    pub fn encoded_features(&self) -> Vec<Vec<f64>> {
        self.features
            .iter()
            .map(|f| {
                let mut row: Vec<f64> = PROMOTIONS
                    .iter()
                    .map(|s| f64::from(u8::from(f["segment"] == *s)))
                    .collect();
                row.push(f["value"].as_f64().unwrap_or(0.0));
                row
            })
            .collect()
    }
}

/// The deployment's `action_features` matching [`NewPromotionWorld::features`].
pub fn action_features_spec() -> serde_json::Value {
    json!([
        {"type": "categorical", "name": "segment", "levels": PROMOTIONS},
        {"type": "numeric", "name": "value"},
    ])
}

/// The world of [`World::drawn`]`(n, k, base_rate, seed)` with features and one promotion more
/// (see the module doc); a function of its arguments.
pub fn with_new_promotion(n: usize, k: usize, base_rate: f64, seed: u64) -> anyhow::Result<NewPromotionWorld> {
    anyhow::ensure!(
        k < PROMOTIONS.len(),
        "a new promotion needs k below {}",
        PROMOTIONS.len()
    );
    let drawn = World::drawn(n, k, base_rate, seed)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0e11_9b1e_0000_0002);
    let mut values: Vec<f64> = (0..k)
        .map(|_| (rng.random_range(0.1..0.6_f64) * 100.0).round() / 100.0)
        .collect();
    let (sibling, _) = drawn.best_single();
    values.push(((values[sibling] + NEW_VALUE_STEP) * 100.0).round() / 100.0);
    let mut weights = drawn.weights.clone();
    weights.push(drawn.weights[sibling].clone());
    let mut offsets = drawn.offsets.clone();
    offsets.push(drawn.offsets[sibling]);
    for (o, v) in offsets.iter_mut().zip(&values) {
        *o += VALUE_EFFECT * (v - 0.35);
    }
    let mut promotions = drawn.promotions.clone();
    promotions.push(format!("{}_plus", drawn.promotions[sibling]));
    let zs: Vec<Vec<f64>> = drawn.customers.iter().map(Customer::z).collect();
    let p = logits(&zs, &weights, &offsets)
        .iter()
        .map(|l| l.iter().map(|v| sigmoid(drawn.base + v)).collect())
        .collect();
    let features = (0..=k)
        .map(|a| {
            let segment = if a < k {
                &drawn.promotions[a]
            } else {
                &drawn.promotions[sibling]
            };
            json!({"segment": segment, "value": values[a]})
        })
        .collect();
    Ok(NewPromotionWorld {
        world: World {
            customers: drawn.customers,
            promotions,
            weights,
            offsets,
            base: drawn.base,
            p,
        },
        features,
        sibling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_promotion_is_a_better_version_of_the_best_one() {
        let w = with_new_promotion(5_000, 5, 0.025, 4).expect("world");
        assert_eq!(w.world.k(), 6);
        let new = w.new_promotion();
        let best_for = |a: usize| {
            w.world
                .p
                .iter()
                .filter(|p| p.iter().copied().fold(0.0, f64::max) == p[a])
                .count()
        };
        assert!(
            best_for(new) * 10 > w.world.p.len(),
            "best for {} of 5,000",
            best_for(new)
        );
        assert_eq!(best_for(w.sibling), 0, "it beats its sibling everywhere");
        assert_eq!(w.features[new]["segment"], w.features[w.sibling]["segment"]);
        let rows = w.encoded_features();
        assert_eq!(rows.len(), 6);
        assert!(
            rows.iter()
                .all(|r| r.len() == PROMOTIONS.len() + 1 && r[..8].iter().sum::<f64>() == 1.0)
        );
        assert!(with_new_promotion(5_000, 5, 0.025, 4).expect("again").world.p == w.world.p);
    }
}
