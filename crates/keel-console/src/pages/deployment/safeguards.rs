//! The deployment page's safeguards: the SLO and its burn rate, output guard trips, alert rules
//! and their states; the live drift monitor is `monitor`'s.

use keel_experiments::Health;

use crate::html::{Cell, Table, count, facts, pct, time_ms};

pub(super) fn safeguards(name: &str, h: &Health) -> String {
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
        out.push_str(&super::monitor::monitor(name, m));
    }
    out
}
