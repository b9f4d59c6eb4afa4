//! The deployment page's breakdown by a context feature (`?segment_by=FEATURE&outcome=NAME`):
//! a form to pick the feature and what to compare (the decision metric, net of the variants'
//! costs, or another declared metric), then per segment the policy-driven traffic against the
//! control group with the lift's 95% and Bonferroni-adjusted intervals, and each variant's rate
//! in each segment. Read from the decision log on demand (`offline::segments`, what the REST
//! report's `?segment_by=` gives), so the page stays fast when nobody asks for it.

use std::fmt::Write as _;
use std::sync::Arc;

use keel_experiments::DeploymentSpec;
use keel_experiments::Deployments;
use keel_experiments::offline::ope::OpeOutcome;
use keel_experiments::offline::segments::{self, Segments};
use keel_experiments::spec::{DEFAULT_REWARD_NAME, FeatureSpec, RewardKind};

use super::variants::lift_cell;
use crate::html::{Cell, Table, count, esc, rate};

/// What the forms offer, from the running spec.
pub(super) struct Choices {
    /// The declared context features (none: the context is free-form, typed in).
    features: Vec<String>,
    /// Those of them that are numeric (CUPED's covariates).
    pub(super) numeric: Vec<String>,
    /// `(value, label)` of each outcome.
    outcomes: Vec<(String, String)>,
}

impl Choices {
    pub(super) fn of(spec: &DeploymentSpec) -> Choices {
        let reward = spec.reward.name.as_deref().unwrap_or(DEFAULT_REWARD_NAME);
        let mut outcomes = vec![("reward".to_owned(), format!("{reward} (the decision metric)"))];
        if spec.variants.iter().any(|v| v.cost.is_some()) {
            outcomes.push(("net".to_owned(), format!("{reward} minus the variant's cost")));
        }
        outcomes.extend(spec.metrics.iter().map(|m| (m.name.clone(), m.name.clone())));
        Choices {
            features: spec.context.iter().map(|f| f.name().to_owned()).collect(),
            numeric: spec
                .context
                .iter()
                .filter(|f| matches!(f, FeatureSpec::Numeric { .. }))
                .map(|f| f.name().to_owned())
                .collect(),
            outcomes,
        }
    }
}

/// The outcome picker (`name="outcome"`), `outcome` selected.
pub(super) fn outcome_select(c: &Choices, outcome: Option<&str>) -> String {
    let mut out = String::from(r#"<select name="outcome">"#);
    for (value, label) in &c.outcomes {
        let selected = if Some(value.as_str()) == outcome {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<option value="{}"{selected}>{}</option>"#,
            esc(value),
            esc(label)
        );
    }
    out.push_str("</select>");
    out
}

/// A picker named `name` over `options` (`chosen` selected), or a text box (`hint` as its
/// placeholder) when there are none to offer (a free-form context).
pub(super) fn feature_picker(name: &str, options: &[String], chosen: Option<&str>, hint: &str) -> String {
    if options.is_empty() {
        return format!(
            r#"<input name="{}" placeholder="{}" value="{}" required>"#,
            esc(name),
            esc(hint),
            esc(chosen.unwrap_or(""))
        );
    }
    let mut out = format!(r#"<select name="{}">"#, esc(name));
    for f in options {
        let selected = if Some(f.as_str()) == chosen { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{0}"{selected}>{0}</option>"#, esc(f));
    }
    out.push_str("</select>");
    out
}

fn form(c: &Choices, feature: Option<&str>, outcome: Option<&str>, bucket: Option<&str>) -> String {
    let mut out = String::from(r#"<form method="get" id="segment-form" class="inline"><label>Break down by "#);
    out.push_str(&feature_picker("segment_by", &c.features, feature, "a context key"));
    out.push_str(r#"</label> <label>comparing "#);
    out.push_str(&outcome_select(c, outcome));
    out.push_str("</label>");
    if let Some(b) = bucket {
        let _ = write!(out, r#"<input type="hidden" name="bucket" value="{}">"#, esc(b));
    }
    out.push_str(r#" <button type="submit">Show</button></form>"#);
    out
}

/// Whether `outcome`'s values are 0/1 (shown as rates in percent), as the breakdown itself
/// judges it ([`OpeOutcome::kind`]).
fn binary(spec: &DeploymentSpec, outcome: Option<&str>) -> bool {
    OpeOutcome::named(outcome, spec).is_ok_and(|o| o.kind(spec) == RewardKind::Binary)
}

/// What `read` (a read of the decision log, on a blocking thread) found, shown by `show`; or,
/// in an alert with the id `{section}-error`, why it could not (the rest of the page serves).
pub(super) async fn from_log<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    section: &str,
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
    show: impl FnOnce(&T) -> String,
) -> String {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(found)) => show(&found),
        Ok(Err(e)) => format!(r#"<p class="alert" id="{section}-error">{}</p>"#, esc(&e.to_string())),
        Err(e) => format!(
            r#"<p class="alert bad" id="{section}-error">reading the decision log stopped: {}</p>"#,
            esc(&e.to_string())
        ),
    }
}

fn tables(s: &Segments, binary: bool) -> String {
    let mut out = format!(
        r#"<p class="hint" id="segments-note">{} by {} ({}): {} decisions with a value, {} without the feature. {}</p>"#,
        esc(&s.outcome),
        esc(&s.feature),
        esc(&s.kind),
        count(s.rewards),
        count(s.missing),
        esc(&s.note)
    );
    let mut t = Table::new(
        "segments",
        &[
            "Segment",
            "Decisions with a value",
            "Policy-driven",
            "Control group",
            "Difference over control (95%)",
            "Difference over control (adjusted)",
        ],
    );
    for g in &s.segments {
        let lift = g.lift_over_control.as_ref();
        t.named_row(
            &g.value,
            vec![
                Cell::text(&g.value),
                Cell::num(g.rewards as f64, count(g.rewards)).key("rewards"),
                Cell::num(g.treated_rate, rate(g.treated_rate, binary)).key("treated_rate"),
                match g.control_rate {
                    Some(r) => Cell::num(r, rate(r, binary)).key("control_rate"),
                    None => Cell::text("—"),
                },
                lift_cell(lift.map(|l| l.lift.difference), false).key("difference"),
                lift_cell(lift.map(|l| l.difference_adjusted), false).key("difference_adjusted"),
            ],
        );
    }
    out.push_str(&t.render("no decision with a value falls in any segment yet"));
    out.push_str("<h3>Each variant, by segment</h3>");
    let mut v = Table::new(
        "segment-variants",
        &[
            "Segment",
            "Variant",
            "Decisions with a value",
            "Rate",
            "95% interval (fixed-horizon)",
        ],
    );
    for g in &s.segments {
        for x in &g.variants {
            v.named_row(
                &format!("{}/{}", g.value, x.name),
                vec![
                    Cell::text(&g.value),
                    Cell::text(&x.name),
                    Cell::num(x.rewards as f64, count(x.rewards)).key("rewards"),
                    Cell::num(x.rate, rate(x.rate, binary)).key("rate"),
                    Cell::html(format!(
                        r#"<span class="ci" data-lo="{}" data-hi="{}">{} – {}</span>"#,
                        x.rate_ci.0,
                        x.rate_ci.1,
                        esc(&rate(x.rate_ci.0, binary)),
                        esc(&rate(x.rate_ci.1, binary))
                    ))
                    .key("rate_ci"),
                ],
            );
        }
    }
    out.push_str(&v.render(""));
    out
}

/// The section: the form, and the breakdown when `feature` is asked for (an error says what
/// was wrong, in the section, and leaves the rest of the page as it is).
pub(super) async fn segments(
    deployments: &Arc<Deployments>,
    name: &str,
    spec: &DeploymentSpec,
    feature: Option<&str>,
    outcome: Option<&str>,
    bucket: Option<&str>,
) -> String {
    let c = Choices::of(spec);
    let mut out = String::from(
        r#"<h2 id="segments-heading">Segments</h2><p class="hint">The report broken down by a context feature, read from the decision log when asked.</p>"#,
    );
    out.push_str(&form(&c, feature, outcome, bucket));
    let Some(feature) = feature.filter(|f| !f.is_empty()) else {
        return out;
    };
    let (d, n, f, o) = (
        deployments.clone(),
        name.to_owned(),
        feature.to_owned(),
        outcome.map(str::to_owned),
    );
    let read = move || segments::of_running(&d, &n, &f, o.as_deref());
    out.push_str(&from_log("segments", read, |s| tables(s, binary(spec, outcome))).await);
    out
}
