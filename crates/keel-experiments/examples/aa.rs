//! The A/A benchmark of the report's statistics: many simulated experiments in which every
//! side has the same conversion rate, each read after every `LOOK_EVERY` decisions with the
//! report's own code (`Lift::between`, `anytime::bernoulli_cs`, `stats::wilson`). A false
//! positive is an experiment in which some read shows a difference (its interval or sequence
//! excludes 0) although there is none; the anytime-valid sequences should keep that at or
//! below the nominal 5% however often the report is read, the fixed-horizon intervals only when
//! read once.
//!
//! Run by `bench/experiments/aa.sh` (settings from the environment: `EXPERIMENTS` 10000,
//! `LOOK_EVERY` 1000, `LOOKS` 100, `SEED` 1).
//!
//! Decisions are drawn in blocks: a block of `LOOK_EVERY` decisions splits between the sides
//! as a binomial draw with the side's share, and each side's conversions are a binomial draw of
//! its decisions; every decision is rewarded before the next read. For binary rewards the
//! count and the number of conversions are all the report's figures depend on, so this is the
//! same as drawing decision by decision.

use keel_experiments::anytime::bernoulli_cs;
use keel_experiments::lift::{Lift, MeanEstimate};
use keel_experiments::stats::{Sums, wilson};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};

struct Scenario {
    name: &'static str,
    /// Share of decisions on the baseline side (the control group, or variant A).
    share: f64,
    /// The conversion rate of both sides.
    rate: f64,
}

/// What one scenario found over every experiment: how many had a false positive at some read.
#[derive(Default)]
struct Found {
    cs_difference: u64,
    cs_relative: u64,
    ci_difference_peeked: u64,
    ci_relative_peeked: u64,
    ci_difference_once: u64,
    /// Experiments where the baseline side's rate sequence missed the true rate at some read.
    rate_cs_missed: u64,
    /// Same for the fixed-horizon (Wilson) interval of a rate, peeked.
    rate_ci_missed: u64,
    /// Mean ratio of the difference's sequence to its interval at the last read.
    width_ratio: f64,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn add(s: &mut Sums, n: u64, conversions: u64) {
    s.exposures += n;
    s.rewards += n;
    s.conversions += conversions;
    s.reward_sum += conversions as f64;
    s.reward_sq_sum += conversions as f64;
}

fn excludes_zero(x: (f64, f64, f64)) -> bool {
    x.1 > 0.0 || x.2 < 0.0
}

fn run(sc: &Scenario, experiments: u64, look_every: u64, looks: u64, seed: u64) -> Found {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut found = Found::default();
    let split = Binomial::new(look_every, sc.share).expect("share in [0, 1]");
    for _ in 0..experiments {
        let (mut base, mut treated) = (Sums::default(), Sums::default());
        let mut seen = [false; 6];
        let mut last_ratio = 0.0;
        for look in 0..looks {
            let nb = split.sample(&mut rng);
            let nt = look_every - nb;
            let cb = Binomial::new(nb, sc.rate).expect("rate").sample(&mut rng);
            let ct = Binomial::new(nt, sc.rate).expect("rate").sample(&mut rng);
            add(&mut base, nb, cb);
            add(&mut treated, nt, ct);
            // The baseline side's rate against the true rate.
            let (lo, hi) = bernoulli_cs(base.reward_sum, base.rewards as f64, 0.05);
            seen[4] |= base.rewards > 0 && !(lo <= sc.rate && sc.rate <= hi);
            let (lo, hi) = wilson(base.reward_sum, base.rewards as f64);
            seen[5] |= base.rewards > 0 && !(lo <= sc.rate && sc.rate <= hi);
            let (Some(t), Some(b)) = (MeanEstimate::of(&treated), MeanEstimate::of(&base)) else {
                continue;
            };
            let l = Lift::between(String::new(), t, b);
            seen[0] |= l.difference_cs.is_some_and(excludes_zero);
            seen[1] |= l.relative_cs.is_some_and(excludes_zero);
            seen[2] |= excludes_zero(l.difference);
            seen[3] |= l.relative.is_some_and(excludes_zero);
            if look + 1 == looks {
                found.ci_difference_once += u64::from(excludes_zero(l.difference));
                let ci = l.difference.2 - l.difference.1;
                if let Some((_, lo, hi)) = l.difference_cs.filter(|_| ci > 0.0) {
                    last_ratio = (hi - lo) / ci;
                }
            }
        }
        found.cs_difference += u64::from(seen[0]);
        found.cs_relative += u64::from(seen[1]);
        found.ci_difference_peeked += u64::from(seen[2]);
        found.ci_relative_peeked += u64::from(seen[3]);
        found.rate_cs_missed += u64::from(seen[4]);
        found.rate_ci_missed += u64::from(seen[5]);
        found.width_ratio += last_ratio / experiments as f64;
    }
    found
}

/// A share of experiments with the half-width of its 95% binomial interval, in percent.
fn share(k: u64, n: u64) -> String {
    let p = k as f64 / n as f64;
    let half = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
    format!("{:.2}% ± {:.2}", p * 100.0, half * 100.0)
}

fn main() {
    let experiments = env("EXPERIMENTS", 10_000);
    let look_every = env("LOOK_EVERY", 1_000);
    let looks = env("LOOKS", 100);
    let seed = env("SEED", 1);
    let scenarios = [
        Scenario {
            name: "A/B 50/50, rate 0.05",
            share: 0.5,
            rate: 0.05,
        },
        Scenario {
            name: "control group 10%, rate 0.05",
            share: 0.1,
            rate: 0.05,
        },
        Scenario {
            name: "A/B 50/50, rate 0.30",
            share: 0.5,
            rate: 0.30,
        },
    ];
    println!(
        "A/A: {experiments} experiments per scenario, read after every {look_every} decisions, {looks} reads \
         ({} decisions each), seed {seed}; nominal error rate 5%",
        look_every * looks
    );
    println!(
        "| scenario | anytime CS, difference | anytime CS, relative lift | fixed-horizon CI peeked, difference | \
         fixed-horizon CI peeked, relative lift | fixed-horizon CI read once at the end | baseline rate CS ever misses | \
         baseline rate CI (Wilson) peeked ever misses | CS / CI width at the end |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, sc) in scenarios.iter().enumerate() {
        let f = run(sc, experiments, look_every, looks, seed + i as u64);
        let n = experiments;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
            sc.name,
            share(f.cs_difference, n),
            share(f.cs_relative, n),
            share(f.ci_difference_peeked, n),
            share(f.ci_relative_peeked, n),
            share(f.ci_difference_once, n),
            share(f.rate_cs_missed, n),
            share(f.rate_ci_missed, n),
            f.width_ratio
        );
    }
}
