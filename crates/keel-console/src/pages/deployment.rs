//! `/ui/deployments/{name}`: the report of a deployment (each variant's share, reward rate with
//! its fixed-horizon interval and anytime-valid confidence sequence, probability to be best and
//! whether it may still be best, lift against control both ways; the holdout group; the lifts
//! over control, uniform and the best variant; the SRM
//! check; canary and paused variants; decisions waiting for a reward), traffic over time as
//! charts, its safeguards (SLO, output guards, alerts, live monitor), and its revisions with a
//! diff between any two (`?diff=A..B`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use keel_experiments::Health;
use keel_experiments::report::Report;
use keel_store::DeploymentRevision;
use serde::Deserialize;

use super::overview::{binary, decisions};
use super::{Who, spec_models, viewer_of};
use crate::html::{Cell, Table, count, esc, facts, link, pct, rate, time, time_ms};
use crate::svg::{Interval, LineChart, Series, Unit, interval_chart, line_chart};
use crate::{Console, Failure, answer};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeploymentQuery {
    /// `A..B`: the revisions to compare.
    diff: Option<String>,
    a: Option<String>,
    b: Option<String>,
}

pub(crate) async fn handler(
    State(c): State<Arc<Console>>,
    Path(name): Path<String>,
    Query(q): Query<DeploymentQuery>,
    who: Who,
) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Deployment {name}");
    answer(viewer.as_ref(), &title, render(&c, &name, &q).await)
}

/// The two revisions a query asks to compare, if it asks.
fn wanted_diff(q: &DeploymentQuery, name: &str) -> Result<Option<(i64, i64)>, Failure> {
    let text = match (&q.diff, &q.a, &q.b) {
        (Some(d), _, _) if !d.is_empty() => d.clone(),
        (_, Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => format!("{a}..{b}"),
        _ => return Ok(None),
    };
    let back = format!("/ui/deployments/{}", crate::html::segment(name));
    let parsed = text
        .split_once("..")
        .and_then(|(a, b)| Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?)));
    match parsed {
        Some(p) => Ok(Some(p)),
        None => Err(Failure::new(
            400,
            "Bad request",
            format!("diff={text:?} is not two revision numbers: write it as A..B, e.g. ?diff=1..2"),
            (&back, "back to the deployment"),
        )),
    }
}

async fn render(c: &Console, name: &str, q: &DeploymentQuery) -> Result<String, Failure> {
    let status_of = c.status_of;
    let missing = format!("Deployment {name:?}");
    let back = ("/ui/", "all deployments");
    let store = c.deployments.store();
    let current = store
        .get_deployment(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let history = store
        .deployment_history(name)
        .await
        .map_err(|e| Failure::from_error(status_of, &e, &missing, back))?;
    let diff = wanted_diff(q, name)?;
    let mut out = String::new();
    let report = c.deployments.report(name);
    let health = c.deployments.health(name);
    let models: BTreeMap<String, Option<String>> = spec_models(&current.spec).into_iter().collect();
    let state = match &report {
        Ok(_) => r#"<span class="badge good">serving</span>"#.to_owned(),
        Err(e) => format!(r#"<span class="badge bad">not serving</span> {}"#, esc(&e.to_string())),
    };
    let description = current.spec.get("description").and_then(|d| d.as_str()).unwrap_or("");
    let mut items = vec![
        ("state", state),
        (
            "revision",
            format!(
                "{} of {}, applied {} by {}{}",
                current.revision,
                history.len(),
                esc(&time(&current.created_at)),
                esc(&current.created_by),
                current
                    .reason
                    .as_deref()
                    .map(|r| format!(" — “{}”", esc(r)))
                    .unwrap_or_default()
            ),
        ),
    ];
    if !description.is_empty() {
        items.push(("description", esc(description).to_string()));
    }
    if let Ok(r) = &report {
        items.push((
            "policy",
            format!("{} (updated {} times)", esc(&r.policy), count(r.policy_version)),
        ));
        items.push((
            "reward",
            if binary(r) {
                "binary (conversion rate)".into()
            } else {
                "continuous (mean reward)".into()
            },
        ));
        items.push((
            "decisions",
            format!(r#"<span data-key="decisions">{}</span>"#, count(decisions(r))),
        ));
        items.push((
            "waiting for a reward",
            format!(
                r#"<span data-key="waiting">{}</span> decisions inside their attribution window"#,
                count(r.waiting_for_reward as u64)
            ),
        ));
    }
    out.push_str(&facts(&items));
    if let Ok(r) = &report {
        out.push_str(&checks(r));
        out.push_str(&variants(r, &models));
        out.push_str(&charts(r));
    }
    match &health {
        Ok(h) => out.push_str(&safeguards(h)),
        // A deployment that does not serve has said why above.
        Err(_) if report.is_err() => {}
        Err(e) => {
            let _ = write!(
                out,
                r#"<h2>Safeguards</h2><p class="empty">{}</p>"#,
                esc(&e.to_string())
            );
        }
    }
    out.push_str(&revisions(name, &history, diff)?);
    Ok(out)
}

/// The warnings a reader must not miss: SRM, paused variants, the canary's step.
fn checks(r: &Report) -> String {
    let mut out = String::new();
    if let Some(srm) = &r.srm {
        if srm.mismatch {
            let _ = write!(
                out,
                r#"<div class="alert bad" id="srm" role="alert"><b>Sample ratio mismatch.</b> The split of decisions differs from the configured weights beyond chance (χ² = {:.2}, p = {:.2e}): assignment or logging is broken somewhere, and the comparison below cannot be trusted until it is found.</div>"#,
                srm.chi_square, srm.p_value
            );
        } else {
            let _ = write!(
                out,
                r#"<p class="hint" id="srm">Sample ratio check passed: the split matches the configured weights (χ² = {:.2}, p = {:.3}).</p>"#,
                srm.chi_square, srm.p_value
            );
        }
    }
    let paused: Vec<&str> = r
        .variants
        .iter()
        .filter(|v| v.paused)
        .map(|v| v.name.as_str())
        .collect();
    if !paused.is_empty() {
        let _ = write!(
            out,
            r#"<div class="alert" id="paused">Paused by the reward guardrail (significantly worse than the baseline): {}. They receive no traffic until the deployment is applied again.</div>"#,
            esc(&paused.join(", "))
        );
    }
    if let Some(share) = r.canary_share {
        let _ = write!(
            out,
            r#"<p class="hint" id="canary">Canary: the candidate variant receives {} of the traffic at this step.</p>"#,
            pct(share)
        );
    }
    out
}

fn interval_text(ci: (f64, f64), binary: bool) -> String {
    format!("{} – {}", rate(ci.0, binary), rate(ci.1, binary))
}

/// An anytime-valid sequence of a rate, its exact bounds in `data-lo`/`data-hi` (for scripts
/// and tests), or a dash.
fn sequence_cell(cs: Option<(f64, f64)>, binary: bool) -> Cell {
    match cs {
        Some((lo, hi)) => Cell::html(format!(
            r#"<span class="cs" data-lo="{lo}" data-hi="{hi}">{}</span>"#,
            esc(&interval_text((lo, hi), binary))
        )),
        None => Cell::text("—"),
    }
}

/// A relative lift (or a difference, `percent` false) with its interval, the exact figures in
/// `data-*` attributes, or a dash.
fn lift_cell(l: Option<(f64, f64, f64)>, percent: bool) -> Cell {
    match l {
        Some((x, lo, hi)) => {
            let shown = if percent {
                format!("{:+.1}% ({:+.1}% to {:+.1}%)", x * 100.0, lo * 100.0, hi * 100.0)
            } else {
                format!("{x:+.4} ({lo:+.4} to {hi:+.4})")
            };
            Cell::html(format!(
                r#"<span class="lift" data-value="{x}" data-lo="{lo}" data-hi="{hi}">{}</span>"#,
                esc(&shown)
            ))
            .sort_by(x.to_string())
        }
        None => Cell::text("—"),
    }
}

/// The three lifts of the policy-driven traffic, each fixed-horizon and anytime-valid.
fn lifts(r: &Report, bin: bool) -> String {
    let l = &r.lifts;
    let rows = [
        ("control", &l.over_control),
        ("uniform", &l.over_uniform),
        ("best variant", &l.over_best_variant),
    ];
    if rows.iter().all(|(_, x)| x.is_none()) {
        return String::new();
    }
    let mut out = String::from(
        r#"<h2>Lifts of the policy</h2><p class="hint">The policy-driven traffic against each baseline. Fixed-horizon intervals hold when read once, at a sample size fixed in advance; anytime-valid confidence sequences hold however often this page is read.</p>"#,
    );
    let mut t = Table::new(
        "lifts",
        &[
            "Over",
            "Baseline",
            "Policy rate",
            "Baseline rate",
            "Difference (fixed-horizon)",
            "Difference (anytime)",
            "Lift (fixed-horizon)",
            "Lift (anytime)",
        ],
    );
    for (over, lift) in rows {
        let Some(x) = lift else { continue };
        t.named_row(
            over,
            vec![
                Cell::text(over),
                Cell::text(&x.baseline),
                Cell::num(x.treated_rate, rate(x.treated_rate, bin)).key("treated_rate"),
                Cell::num(x.baseline_rate, rate(x.baseline_rate, bin)).key("baseline_rate"),
                lift_cell(Some(x.difference), false).key("difference"),
                lift_cell(x.difference_cs, false).key("difference_cs"),
                lift_cell(x.relative, true).key("relative"),
                lift_cell(x.relative_cs, true).key("relative_cs"),
            ],
        );
    }
    out.push_str(&t.render(""));
    out
}

fn variants(r: &Report, models: &BTreeMap<String, Option<String>>) -> String {
    let bin = binary(r);
    let mut out = String::from(
        r#"<h2>Variants</h2><p class="hint">Policy-driven decisions only (the holdout group is below). Intervals and sequences are 95%; lift is relative to the control (the holdout group, or the guardrail baseline). <b>Fixed-horizon</b> figures (interval, P(best)) hold when read once, at a sample size fixed in advance; <b>anytime</b> figures (confidence sequences, may be best) hold however often this page is read.</p>"#,
    );
    let mut t = Table::new(
        "variants",
        &[
            "Variant",
            "Model",
            "State",
            "Decisions",
            "Share",
            "Rewards",
            "Reward rate",
            "95% interval (fixed-horizon)",
            "95% sequence (anytime)",
            "P(best) (fixed-horizon)",
            "May be best (anytime)",
            "Lift vs control (fixed-horizon)",
            "Lift vs control (anytime)",
        ],
    );
    for v in &r.variants {
        let state = match (v.paused, v.shadow) {
            (true, _) => r#"<span class="badge warn">paused</span>"#,
            (_, true) => r#"<span class="badge">shadow</span>"#,
            _ => r#"<span class="badge good">serving</span>"#,
        };
        let model = models.get(&v.name).cloned().flatten();
        let model_cell = match &model {
            Some(m) => Cell::html(link("/ui/models", m.split(['@', ':']).next().unwrap_or(m), m)),
            None => Cell::text("—"),
        };
        let may_be_best = match (v.shadow, v.may_be_best) {
            (true, _) => "—",
            (false, true) => "yes",
            (false, false) => "no",
        };
        t.named_row(
            &v.name,
            vec![
                Cell::text(&v.name),
                model_cell,
                Cell::html(state.to_owned()),
                Cell::num(v.exposures as f64, count(v.exposures)).key("exposures"),
                Cell::num(v.share, pct(v.share)).key("share"),
                Cell::num(v.rewards as f64, count(v.rewards)).key("rewards"),
                Cell::num(v.rate, rate(v.rate, bin)).key("rate"),
                Cell::text(&interval_text(v.rate_ci, bin)).sort_by(v.rate_ci.0.to_string()),
                sequence_cell(v.rate_cs, bin).key("rate_cs"),
                Cell::num(v.prob_best, pct(v.prob_best)).key("prob_best"),
                Cell::text(may_be_best).key("may_be_best"),
                lift_cell(v.lift_vs_control, true).key("lift"),
                lift_cell(v.lift_vs_control_cs, true).key("lift_cs"),
            ],
        );
    }
    out.push_str(&t.render("no variants"));
    if let Some(control) = &r.control_group {
        out.push_str("<h2>Holdout group</h2>");
        if let Some(what) = &r.control {
            let _ = write!(
                out,
                "<p>The holdout group ({} of units) gets: {}.</p>",
                pct(what.share),
                crate::html::escape(&what.description)
            );
        }
        let mut t = Table::new(
            "groups",
            &[
                "Group",
                "Decisions",
                "Rewards",
                "Reward rate",
                "95% interval (fixed-horizon)",
                "95% sequence (anytime)",
            ],
        );
        for (g, group) in [("holdout (control)", control), ("policy-driven", &r.treated_group)] {
            t.named_row(
                g,
                vec![
                    Cell::text(g),
                    Cell::num(group.exposures as f64, count(group.exposures)).key("exposures"),
                    Cell::num(group.rewards as f64, count(group.rewards)).key("rewards"),
                    Cell::num(group.rate, rate(group.rate, bin)).key("rate"),
                    Cell::text(&interval_text(group.rate_ci, bin)),
                    sequence_cell(group.rate_cs, bin).key("rate_cs"),
                ],
            );
        }
        out.push_str(&t.render(""));
        if let Some((l, lo, hi)) = r.lift_over_control_group {
            let anytime = r.lift_over_control_group_cs.map_or(String::new(), |(_, slo, shi)| {
                format!(
                    r#"; anytime-valid 95% sequence <span id="lift-cs" data-lo="{slo}" data-hi="{shi}">{:+.1}% to {:+.1}%</span>"#,
                    slo * 100.0,
                    shi * 100.0
                )
            });
            let _ = write!(
                out,
                r#"<p id="lift">Lift of the policy over the holdout group: <b>{:+.1}%</b> (fixed-horizon 95% interval {:+.1}% to {:+.1}%{anytime}).</p>"#,
                l * 100.0,
                lo * 100.0,
                hi * 100.0
            );
        }
    }
    out.push_str(&lifts(r, bin));
    out
}

fn charts(r: &Report) -> String {
    let names: Vec<&str> = r.variants.iter().map(|v| v.name.as_str()).collect();
    let mut share: Vec<Series> = names
        .iter()
        .map(|n| Series {
            name: (*n).to_owned(),
            points: Vec::new(),
        })
        .collect();
    let mut counts = share.clone();
    for (at, per) in &r.traffic {
        let total: u64 = per.iter().sum();
        for (i, n) in per.iter().enumerate() {
            if let (Some(s), Some(c)) = (share.get_mut(i), counts.get_mut(i)) {
                if total > 0 {
                    s.points.push((*at as f64, *n as f64 / total as f64));
                }
                c.points.push((*at as f64, *n as f64));
            }
        }
    }
    let bin = binary(r);
    let rows: Vec<Interval> = r
        .variants
        .iter()
        .filter(|v| v.exposures > 0)
        .map(|v| Interval {
            name: v.name.clone(),
            estimate: v.rate,
            low: v.rate_ci.0,
            high: v.rate_ci.1,
        })
        .collect();
    let unit = if bin { Unit::Percent } else { Unit::Number };
    let first = r.traffic.first().map(|(t, _)| time_ms(*t)).unwrap_or_default();
    let mut out = format!(
        r#"<h2>Over time</h2><p class="hint">Decisions per time bucket of the report, by variant, since {}. The report keeps decisions per bucket, not rewards, so reward rates are shown as totals with their intervals.</p><div class="grid2">"#,
        esc(&first)
    );
    out.push_str(&line_chart(&LineChart {
        id: "chart-share",
        title: "Traffic share per variant",
        y_label: "share of decisions",
        unit: Unit::Percent,
        series: share,
        y_max: Some(1.0),
    }));
    out.push_str(&line_chart(&LineChart {
        id: "chart-decisions",
        title: "Decisions per bucket",
        y_label: "decisions",
        unit: Unit::Count,
        series: counts,
        y_max: None,
    }));
    out.push_str(&interval_chart(
        "chart-rates",
        "Reward rate per variant (95% interval)",
        if bin { "conversion rate" } else { "mean reward" },
        unit,
        &rows,
    ));
    out.push_str("</div>");
    out
}

fn safeguards(h: &Health) -> String {
    let mut out = String::from("<h2>Safeguards</h2>");
    match &h.slo {
        Some(s) => {
            let burn = if s.burn_rate > 1.0 {
                format!(
                    r#"<span class="badge bad">{:.2}× (spending the budget too fast)</span>"#,
                    s.burn_rate
                )
            } else {
                format!(r#"<span class="badge good">{:.2}×</span>"#, s.burn_rate)
            };
            out.push_str(&facts(&[
                (
                    "SLO",
                    format!(
                        "{} of decide calls under {} ms without error, over {} s",
                        pct(s.objective),
                        s.latency_ms,
                        s.window_seconds
                    ),
                ),
                (
                    "availability",
                    format!(
                        "{} of {} requests ({} errors, {} slow)",
                        pct(s.availability),
                        count(s.requests),
                        count(s.errors),
                        count(s.slow)
                    ),
                ),
                ("burn rate", burn),
                ("error budget left", pct(s.budget_remaining)),
            ]));
        }
        None => out.push_str(r#"<p class="hint">No SLO is set for this deployment.</p>"#),
    }
    let mut t = Table::new("guard-trips", &["Output guard trip", "Answers held back"]);
    for (k, n) in &h.guardrail_trips {
        t.row(vec![Cell::text(k), Cell::num(*n as f64, count(*n))]);
    }
    out.push_str(&t.render("No answer was held back by an output guard in this revision."));
    let mut t = Table::new("alerts", &["Alert rule", "State", "Since", "Rolls back"]);
    for a in &h.alerts {
        let (state, since) = match a.state {
            keel_guard::AlertState::Ok => (r#"<span class="badge good">ok</span>"#, None),
            keel_guard::AlertState::Pending { since_ms } => {
                (r#"<span class="badge warn">pending</span>"#, Some(since_ms))
            }
            keel_guard::AlertState::Firing { since_ms } => (r#"<span class="badge bad">firing</span>"#, Some(since_ms)),
        };
        t.named_row(
            &a.rule,
            vec![
                Cell::text(&a.rule),
                Cell::html(state.to_owned()),
                Cell::text(&since.map(time_ms).unwrap_or_default()),
                Cell::text(if a.rollback { "yes" } else { "no" }),
            ],
        );
    }
    out.push_str(&t.render("No alert rules."));
    if let Some(m) = &h.monitor {
        out.push_str("<h2>Live monitor</h2>");
        out.push_str(&facts(&[
            ("reference", link("/ui/data", &m.reference, &m.reference)),
            (
                "state",
                esc(m.state).to_string() + &m.error.as_deref().map(|e| format!(": {}", esc(e))).unwrap_or_default(),
            ),
            ("rows seen", count(m.rows_seen)),
            ("schema violations", count(m.schema_violations)),
            (
                "live AUC",
                m.auc.map_or("— (no labels yet)".into(), |a| {
                    format!("{a:.3} over {} labelled", m.labelled)
                }),
            ),
        ]));
        if let Some(w) = &m.last_window {
            let mut t = Table::new("drift", &["Column", "Drift figure (distance, or 1 − p)"]);
            for (col, v) in w.signals() {
                t.named_row(&col, vec![Cell::text(&col), Cell::num(v, format!("{v:.3}"))]);
            }
            let _ = write!(
                out,
                "<p class=\"hint\">Last window: {} rows seen, evaluated {}.</p>",
                count(w.window_rows_seen),
                esc(&time_ms(w.at_ms))
            );
            out.push_str(&t.render("no columns compared"));
        }
    }
    out
}

fn revisions(name: &str, history: &[DeploymentRevision], diff: Option<(i64, i64)>) -> Result<String, Failure> {
    let base = format!("/ui/deployments/{}", crate::html::segment(name));
    let mut out = String::from("<h2>Revisions</h2>");
    let mut t = Table::new("revisions", &["Revision", "Applied", "By", "Reason", "Compare"]);
    let mut sorted: Vec<&DeploymentRevision> = history.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for r in &sorted {
        let compare = if r.revision > 1 {
            format!(
                r#"<a href="{}?diff={}..{}#diff">changes from r{}</a>"#,
                esc(&base),
                r.revision - 1,
                r.revision,
                r.revision - 1
            )
        } else {
            String::new()
        };
        t.named_row(
            &r.revision.to_string(),
            vec![
                Cell::num(r.revision as f64, r.revision.to_string()),
                Cell::text(&time(&r.created_at)).sort_by(r.created_at.timestamp_millis().to_string()),
                Cell::text(&r.created_by),
                Cell::text(r.reason.as_deref().unwrap_or("")),
                Cell::html(compare),
            ],
        );
    }
    out.push_str(&t.render("no revisions"));
    if history.len() > 1 {
        let options = |selected: i64| {
            sorted
                .iter()
                .map(|r| {
                    format!(
                        r#"<option value="{v}"{s}>r{v}</option>"#,
                        v = r.revision,
                        s = if r.revision == selected { " selected" } else { "" }
                    )
                })
                .collect::<String>()
        };
        let (a, b) = diff.unwrap_or((sorted[1].revision, sorted[0].revision));
        let _ = write!(
            out,
            r#"<form class="filters" method="get" action="{}#diff"><label>from<select name="a">{}</select></label><label>to<select name="b">{}</select></label><button type="submit">Compare</button></form>"#,
            esc(&base),
            options(a),
            options(b)
        );
    }
    if let Some((a, b)) = diff {
        let find = |n: i64| {
            history.iter().find(|r| r.revision == n).ok_or_else(|| {
                Failure::new(
                    404,
                    format!("Revision {n} not found"),
                    format!(
                        "deployment {name:?} has revisions 1 to {}; there is no revision {n}",
                        history.len()
                    ),
                    (&base, "back to the deployment"),
                )
            })
        };
        let (ra, rb) = (find(a)?, find(b)?);
        let pretty = |r: &DeploymentRevision| serde_json::to_string_pretty(&r.spec).unwrap_or_default();
        let _ = write!(
            out,
            r#"<h2 id="diff-title">Changes from revision {a} to revision {b}</h2><p class="hint">r{a}: {} by {}; r{b}: {} by {}. Lines marked − were removed, + added.</p>"#,
            esc(&time(&ra.created_at)),
            esc(&ra.created_by),
            esc(&time(&rb.created_at)),
            esc(&rb.created_by)
        );
        out.push_str(&super::diff::render(&pretty(ra), &pretty(rb)));
    }
    Ok(out)
}
