//! The deployment page's tables of figures: each variant (share, rate with its fixed-horizon
//! interval and anytime-valid sequence, P(best), may be best, lift against control), the
//! holdout group and the lifts of the policy over control, uniform and the best variant.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use keel_experiments::report::Report;

use crate::html::{Cell, Table, count, esc, link, pct, rate};
use crate::pages::overview::binary;

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
pub(super) fn lift_cell(l: Option<(f64, f64, f64)>, percent: bool) -> Cell {
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

pub(super) fn variants(r: &Report, models: &BTreeMap<String, Option<String>>) -> String {
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
