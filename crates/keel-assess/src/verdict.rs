//! The checks and the verdict: every check names its figure and its threshold; any failed check
//! makes the data not ready, any warning calls for caution.

use serde::Serialize;

use crate::arrival::human_duration;
use crate::{AssessOptions, Assessment};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Worth knowing; does not change the verdict.
    Info,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every check passed (or only informs).
    Ready,
    /// At least one check warns, none fails.
    Caution,
    /// At least one check fails.
    NotReady,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ready => "READY",
            Verdict::Caution => "CAUTION",
            Verdict::NotReady => "NOT READY",
        }
    }
}

/// One check: what was measured, against what.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// `data` (do we have the right data?) or `arrival` (does it arrive fast enough?).
    pub question: &'static str,
    pub status: Status,
    pub figure: String,
    pub threshold: String,
    pub detail: String,
}

impl Check {
    /// One sentence: check, figure, threshold, detail.
    pub fn sentence(&self) -> String {
        let mut s = format!("{}: {}", self.name, self.figure);
        if !self.threshold.is_empty() {
            s.push_str(&format!(" (threshold: {})", self.threshold));
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(" - {}", self.detail));
        }
        s
    }
}

fn pct(x: f64) -> String {
    if x > 0.0 && x < 0.001 {
        format!("{:.3}%", x * 100.0)
    } else {
        format!("{:.1}%", x * 100.0)
    }
}

fn check(name: &str, question: &'static str, status: Status, figure: String, threshold: String, detail: &str) -> Check {
    Check {
        name: name.to_string(),
        question,
        status,
        figure,
        threshold,
        detail: detail.to_string(),
    }
}

fn list(names: &[String], max: usize) -> String {
    if names.len() <= max {
        names.join(", ")
    } else {
        format!("{}, ... ({} in all)", names[..max].join(", "), names.len())
    }
}

/// Every check of an assessment, data first, then arrival.
pub(crate) fn checks(a: &Assessment, options: &AssessOptions) -> Vec<Check> {
    use Status::{Fail, Info, Pass, Warn};
    let t = &options.thresholds;
    let mut out = Vec::new();
    let target = &a.target;
    let labelled = target.positives + target.negatives;

    out.push(check(
        "rows",
        "data",
        if labelled >= t.min_rows { Pass } else { Fail },
        format!("{labelled} labelled rows"),
        format!(">= {}", t.min_rows),
        if labelled >= t.min_rows {
            ""
        } else {
            "too few rows to train and validate a model"
        },
    ));
    let minority = target.positives.min(target.negatives);
    out.push(check(
        "class counts",
        "data",
        if minority >= t.min_positives { Pass } else { Fail },
        format!("{} positives, {} negatives", target.positives, target.negatives),
        format!(">= {} of each class", t.min_positives),
        if minority >= t.min_positives {
            ""
        } else {
            "too few examples of the rare class for a stable model or a trustworthy validation"
        },
    ));
    out.push(check(
        "class balance",
        "data",
        if target.minority_share >= t.min_minority_share {
            Pass
        } else {
            Warn
        },
        format!("positive rate {}", pct(target.rate)),
        format!("minority class >= {}", pct(t.min_minority_share)),
        if target.minority_share >= t.min_minority_share {
            ""
        } else {
            "heavily imbalanced: use rate-aware metrics (AUC, log loss, precision at k) and enough data"
        },
    ));
    out.push(check(
        "target missing",
        "data",
        if target.missing == 0 { Pass } else { Warn },
        format!("{} rows without a target", target.missing),
        "0".into(),
        if target.missing == 0 {
            ""
        } else {
            "unlabelled rows are left out of every target statistic"
        },
    ));

    let leaky: Vec<String> = a
        .features
        .iter()
        .filter(|f| f.leakage)
        .map(|f| format!("{} (AUC {:.3})", f.name, f.auc))
        .collect();
    out.push(check(
        "leakage",
        "data",
        if leaky.is_empty() { Pass } else { Fail },
        if leaky.is_empty() {
            "no feature predicts the target alone".into()
        } else {
            format!("suspected leakage: {}", list(&leaky, 5))
        },
        format!("single-feature AUC < {}", t.leakage_auc),
        if leaky.is_empty() {
            ""
        } else {
            "a feature that alone predicts the target almost perfectly is usually recorded after the outcome; remove it or prove it is known at prediction time"
        },
    ));
    let best = a.features.iter().find(|f| !f.leakage);
    match best {
        Some(f) => out.push(check(
            "signal",
            "data",
            if f.strength >= t.min_auc { Pass } else { Warn },
            format!(
                "best single feature {} (AUC {:.3}, MI {:.4} nats)",
                f.name, f.strength, f.mutual_information
            ),
            format!("AUC >= {}", t.min_auc),
            if f.strength >= t.min_auc {
                ""
            } else {
                "no feature alone separates the classes"
            },
        )),
        None => out.push(check(
            "signal",
            "data",
            Warn,
            "no usable feature column".into(),
            "at least one feature".into(),
            "the table has no numeric or categorical feature besides target, time and entity",
        )),
    }
    match &a.baseline {
        Some(b) => {
            let ok = b.auc_mean >= t.min_auc && b.log_loss_gain > 0.0;
            out.push(check(
                "baseline",
                "data",
                if ok { Pass } else { Warn },
                format!(
                    "{}-fold AUC {:.3} ± {:.3}, log loss {:.4} vs prior {:.4} ({} gain)",
                    b.folds,
                    b.auc_mean,
                    b.auc_sd,
                    b.log_loss_mean,
                    b.prior_log_loss_mean,
                    pct(b.log_loss_gain)
                ),
                format!("AUC >= {} and log loss below the prior's", t.min_auc),
                if minority < t.min_positives {
                    "too few examples of the rare class: the cross-validated score is unreliable (and biased low when folds take a class's rare examples away from training)"
                } else if ok {
                    ""
                } else {
                    "a simple model finds little signal: expect a weak model unless better features exist"
                },
            ));
        }
        None => out.push(check(
            "baseline",
            "data",
            Info,
            "not run".into(),
            String::new(),
            "run without --no-baseline for a cross-validated score",
        )),
    }

    let feature_cols: Vec<&crate::ColumnProfile> = a
        .profile
        .columns
        .iter()
        .filter(|c| a.features.iter().any(|f| f.name == c.name))
        .collect();
    let missing: Vec<String> = a
        .profile
        .columns
        .iter()
        .filter(|c| c.missing_share > t.max_missing_share)
        .map(|c| format!("{} ({})", c.name, pct(c.missing_share)))
        .collect();
    let any_missing = a.profile.columns.iter().filter(|c| c.missing > 0).count();
    out.push(check(
        "missing values",
        "data",
        if missing.is_empty() { Pass } else { Warn },
        if missing.is_empty() {
            format!("{any_missing} columns have missing values, none above the threshold")
        } else {
            format!("mostly missing: {}", list(&missing, 5))
        },
        format!("<= {} missing per column", pct(t.max_missing_share)),
        "",
    ));
    let constant: Vec<String> = feature_cols
        .iter()
        .filter(|c| c.constant)
        .map(|c| c.name.clone())
        .collect();
    out.push(check(
        "constant columns",
        "data",
        if constant.is_empty() { Pass } else { Info },
        if constant.is_empty() {
            "none".into()
        } else {
            list(&constant, 8)
        },
        String::new(),
        if constant.is_empty() {
            ""
        } else {
            "they carry no information; drop them"
        },
    ));
    let dups: Vec<String> = a
        .profile
        .duplicate_columns
        .iter()
        .map(|g| format!("[{}]", g.join(" = ")))
        .collect();
    out.push(check(
        "duplicate columns",
        "data",
        if dups.is_empty() { Pass } else { Info },
        if dups.is_empty() { "none".into() } else { list(&dups, 5) },
        String::new(),
        if dups.is_empty() {
            ""
        } else {
            "identical content: keep one of each group"
        },
    ));
    if let Some(d) = a.profile.duplicate_rows {
        let share = d as f64 / a.rows.max(1) as f64;
        out.push(check(
            "duplicate rows",
            "data",
            if share <= t.max_duplicate_row_share { Pass } else { Warn },
            format!("{d} rows ({})", pct(share)),
            format!("<= {}", pct(t.max_duplicate_row_share)),
            if share <= t.max_duplicate_row_share {
                ""
            } else {
                "repeated rows inflate validation scores when copies fall in both train and test"
            },
        ));
    }
    let high_card: Vec<String> = feature_cols
        .iter()
        .filter(|c| c.kind == crate::ColumnKind::Categorical && c.count > 100 && c.distinct * 2 > c.count)
        .map(|c| format!("{} ({} values)", c.name, c.distinct))
        .collect();
    if !high_card.is_empty() {
        out.push(check(
            "cardinality",
            "data",
            Info,
            format!("identifier-like categorical columns: {}", list(&high_card, 5)),
            "distinct <= 50% of rows".into(),
            "one value per row or so: useless as a category, maybe an identifier",
        ));
    }
    if let Some(e) = &a.entities {
        out.push(check(
            "entities",
            "data",
            if e.missing == 0 { Info } else { Warn },
            format!(
                "{} entities in {}, {:.1} rows each on average (max {}), {} rows without one",
                e.entities, e.column, e.mean_rows_per_entity, e.max_rows_per_entity, e.missing
            ),
            String::new(),
            if e.entities > 0 && e.mean_rows_per_entity > 1.5 {
                "several rows per entity: split train and test by entity or by time to avoid optimistic scores"
            } else {
                ""
            },
        ));
    }

    match &a.arrival {
        None => out.push(check(
            "time",
            "arrival",
            Warn,
            if options.time.is_some() {
                "the time column has no values".into()
            } else {
                "no time column given".into()
            },
            "a time column".into(),
            "freshness, coverage and gaps cannot be assessed; pass --time",
        )),
        Some(r) => {
            out.push(check(
                "coverage",
                "arrival",
                if r.missing == 0 { Info } else { Warn },
                format!(
                    "{} to {} ({}), {} rows without a time",
                    r.first,
                    r.last,
                    human_duration(r.span_seconds),
                    r.missing
                ),
                String::new(),
                "",
            ));
            let fresh = r.freshness_seconds <= t.max_freshness_seconds;
            let future = r.freshness_seconds < -86_400.0;
            out.push(check(
                "freshness",
                "arrival",
                if !fresh {
                    Fail
                } else if future {
                    Warn
                } else {
                    Pass
                },
                format!(
                    "newest row {} old (at {}, now {})",
                    human_duration(r.freshness_seconds),
                    r.last,
                    r.now
                ),
                format!("<= {}", human_duration(t.max_freshness_seconds)),
                if !fresh {
                    "the data does not arrive (or stopped arriving): a model trained on it cannot be fed fresh inputs"
                } else if future {
                    "rows dated in the future: check clocks and time zones"
                } else {
                    ""
                },
            ));
            let gaps_ok = r.empty_share <= t.max_empty_bucket_share;
            out.push(check(
                "gaps",
                "arrival",
                if gaps_ok { Pass } else { Warn },
                format!(
                    "{} of {} {} buckets empty ({}); longest gap {}, {} gaps > {}x the median inter-arrival ({})",
                    r.empty_buckets,
                    r.buckets.len(),
                    r.bucket,
                    pct(r.empty_share),
                    human_duration(r.max_interarrival_seconds),
                    r.gap_count,
                    r.gap_factor,
                    human_duration(r.median_interarrival_seconds)
                ),
                format!("<= {} empty buckets", pct(t.max_empty_bucket_share)),
                if gaps_ok {
                    ""
                } else {
                    "arrivals stop for long stretches: find out why before relying on the feed"
                },
            ));
        }
    }
    out
}

/// The verdict and the sentences of the checks that warn or fail (failures first).
pub(crate) fn decide(checks: &[Check]) -> (Verdict, Vec<String>) {
    let verdict = if checks.iter().any(|c| c.status == Status::Fail) {
        Verdict::NotReady
    } else if checks.iter().any(|c| c.status == Status::Warn) {
        Verdict::Caution
    } else {
        Verdict::Ready
    };
    let mut reasons: Vec<String> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .chain(checks.iter().filter(|c| c.status == Status::Warn))
        .map(|c| format!("[{}] {}", c.status.label(), c.sentence()))
        .collect();
    if reasons.is_empty() {
        reasons.push("every check passed".into());
    }
    (verdict, reasons)
}
