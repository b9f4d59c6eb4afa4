//! The decision policies of keel's experiments: fixed A/B/n weights, multi-armed bandits
//! (epsilon-greedy, UCB1, Beta and Gaussian Thompson sampling) and contextual bandits (disjoint
//! LinUCB, linear Thompson sampling, SquareCB, Bayesian logistic Thompson sampling for
//! conversions, each optionally discounted for worlds that change; `contextual` names the one
//! keel recommends). This crate owns the math only: a [`PolicyConfig`]
//! (the spec model and its validation), a serde-able [`PolicyState`] that decides and learns, and
//! the sticky assignment hash. Every decision comes with the exact probability of every action
//! ([`Decision::probabilities`]), which keel logs for off-policy evaluation, and every policy with a
//! `floor` mixes in `floor / K` per action so no action's propensity falls below it. It must never
//! depend on I/O, async runtimes, HTTP, the store or any other keel crate: callers own persistence,
//! locking and transport, and pass in the random number generator.
//!
//! Math notes.
//! - Thompson sampling has no closed-form action probabilities, so the policies sample from an
//!   estimate and log that estimate, which is then exactly the sampling distribution ("probability
//!   matching"). Non-contextual TS uses the probability of being best over [`THOMPSON_DRAWS`]
//!   posterior draws, cached in the state on a schedule described at [`PolicyState`]; linear TS
//!   uses [`LINEAR_THOMPSON_DRAWS`] draws per context. Both use a fixed internal seed mixed with the
//!   policy version, so [`PolicyState::probabilities`] is a deterministic function of the state and
//!   context and can be recomputed for OPE. For linear TS the score `x'theta_a` of a posterior draw
//!   is univariate normal, `N(x'theta_hat_a, v^2 x'A_a^-1 x)`, so it is drawn directly: no
//!   Cholesky factor and no d^3 work per decision. Logistic TS draws the log-odds
//!   `x'w_a ~ N(x'm_a, v^2 x'S_a x)` the same way (the conversion probability is increasing in
//!   the log-odds, so the argmax is the same) and follows the same contract: the logged
//!   propensity is exactly the distribution sampled from, which estimates the Thompson
//!   distribution with a standard error of at most `sqrt(0.25 / 64) = 0.0625` per action.
//!   The draws of one version do not depend on the context (draw `r` over `n` eligible actions
//!   takes the normals `r n .. (r + 1) n` of the version's stream), so the state keeps the
//!   normals drawn so far until the next update and the decides of a version reuse them,
//!   with the same result bit for bit (not saved: a restored state draws them again).
//! - Logistic TS keeps, per action, a Gaussian posterior `N(m_a, S_a)` updated by an online
//!   Laplace approximation (Chapelle & Li 2011, with a full covariance): the exact mode of the
//!   old posterior times the new observation's likelihood (a one-dimensional Newton solve along
//!   `S_a x`), and the likelihood's curvature at the mode added to the precision by
//!   Sherman-Morrison, O(d^2) per update (see `logistic.rs`).
//! - Discounting (`half_life` h on the contextual policies): before each update every action's
//!   posterior is raised to the power `gamma = 2^(-1/h)` and multiplied by the prior to the
//!   power `1 - gamma` (precision `gamma P + (1 - gamma) P_0`, precision-weighted mean times
//!   `gamma`), so an observation weighs half after h updates and an action's uncertainty grows
//!   back while it is not chosen (D-LinUCB's weights, Russac et al. 2019). That update is not
//!   rank-one: the precision is kept and inverted by Cholesky for every action, O(K d^3) per
//!   update, about 6x slower than without discounting at K = 5, d = 18.
//! - Gaussian TS (continuous rewards such as revenue) puts a Normal prior
//!   `N(prior_mean, prior_variance)` on each mean and handles the unknown noise variance by a
//!   plug-in: the larger of the action's own sample variance and the variance pooled over all
//!   actions (with `prior_variance` as one pseudo-observation). The pooled floor keeps an action
//!   whose few rewards were all 0 (revenue is mostly 0) from looking certain and being starved,
//!   which a per-action plug-in or Normal-Gamma model does on sparse rewards.
//! - The contextual policies keep, per action, `A^-1` (ridge lambda = 1, intercept prepended) and
//!   `theta = A^-1 b`, updated by Sherman-Morrison in O(d^2). Matrices are flat `Vec<f64>` and the
//!   loops are hand-written: d is small (tens), a linear-algebra crate would bring its own matrix
//!   types into the serialized state, and flat vectors serialize as plain numbers.
//! - Shared models (`"shared": true` on `lin_ucb` and `logistic_thompson`, Vowpal Wabbit's
//!   `--cb_explore_adf -q`): one model over `z = x ⊗ [1, a]`, the context (intercept first)
//!   times the action's features (a leading 1, so the context's own effect is learned too), of
//!   dimension `(d + 1)(m + 1)`. An action is only its features, so a new action scores from
//!   what the others taught the model, and the state does not depend on the number of actions
//!   ([`PolicyState::carry`] keeps it across a change of the action set). Scoring the eligible
//!   actions costs one contraction of the covariance with the context, `nnz(x)^2` per entry of
//!   the `(m + 1) x (m + 1)` result that some eligible action needs (both of its features
//!   non-zero: few for one-hot action features), then `nnz(a)^2` per action (`shared.rs`),
//!   instead of `K` quadratic forms of size `D^2`; the result equals the dense contraction's
//!   bit for bit.
//! - Eligibility ([`PolicyState::probabilities_among`]): the policy decides among the eligible
//!   actions as if the others did not exist, so the logged distribution is over that set.
//! - [`sticky_unit`] hashes with XXH3-64 (a published, versioned spec), never with std's hasher,
//!   whose output may change between Rust releases.

mod carry;
mod config;
mod draws;
mod error;
mod linear;
mod logistic;
mod shared;
mod state;
mod thompson;

pub use config::{MAX_ACTIONS, MAX_FEATURES, MAX_MATRIX_ENTRIES, PolicyConfig};
pub use draws::LINEAR_THOMPSON_DRAWS;
pub use error::{BanditError, Result};
pub use shared::MAX_ACTION_FEATURES;
pub use state::{
    ArmSummary, Decision, MAX_ABS_FEATURE, MAX_ABS_REWARD, PolicyState, THOMPSON_DRAWS, THOMPSON_MAX_STALE_UPDATES,
};

/// A stable uniform number in `[0, 1)` for the pair (`experiment`, `unit`), for sticky assignment.
///
/// Spec (never change it: assignments must survive upgrades): `h = XXH3_64bits(bytes)` with seed 0
/// (xxHash 0.8 specification) of `bytes = u64_le(len(experiment)) ‖ experiment ‖ unit` (UTF-8; the
/// length prefix keeps `("ab", "c")` apart from `("a", "bc")`), and the result is
/// `(h >> 11) * 2^-53`.
pub fn sticky_unit(experiment: &str, unit: &str) -> f64 {
    let mut bytes = Vec::with_capacity(8 + experiment.len() + unit.len());
    bytes.extend_from_slice(&(experiment.len() as u64).to_le_bytes());
    bytes.extend_from_slice(experiment.as_bytes());
    bytes.extend_from_slice(unit.as_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(&bytes);
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Inverse CDF: the first action whose cumulative probability exceeds `u` (a uniform in `[0, 1)`).
///
/// Actions of probability 0 are never picked; if rounding leaves `u` beyond the total, or `u` is
/// NaN, the last action of positive probability is returned. Returns 0 for an empty slice.
pub fn pick(probabilities: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    let mut last_positive = 0;
    for (i, p) in probabilities.iter().enumerate() {
        if *p > 0.0 {
            cumulative += p;
            last_positive = i;
            if u < cumulative {
                return i;
            }
        }
    }
    last_positive
}
