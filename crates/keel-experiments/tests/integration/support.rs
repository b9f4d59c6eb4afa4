//! Helpers every part of this binary may use.

use keel_experiments::Deployments;

/// Decisions `name` served on this process, over its variants.
pub fn exposures(exps: &Deployments, name: &str) -> u64 {
    exps.report(name)
        .expect("report")
        .variants
        .iter()
        .map(|v| v.exposures)
        .sum()
}
