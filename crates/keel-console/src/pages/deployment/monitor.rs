//! The deployment page's live monitor (`GET /v1/deployments/{name}/health`'s `monitor`): its
//! state, live AUC once labels arrive, the data-quality counters per column, and the last
//! window's drift per input column and per score track (test, score, threshold, verdict, the
//! reference's and the window's means).

use std::fmt::Write as _;

use keel_experiments::MonitorStatus;
use keel_monitor::ColumnDrift;
use serde::Serialize;

use crate::html::{Cell, Table, count, esc, facts, link, time_ms};

/// A unit enum's serialised name (`numeric`, `psi`, `reference`).
fn name_of(v: impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn opt(v: Option<f64>) -> Cell {
    match v {
        Some(x) => Cell::num(x, format!("{x:.4}")),
        None => Cell::text("—"),
    }
}

/// One row of a drift table.
fn drift_cells(first: Cell, c: &ColumnDrift) -> Vec<Cell> {
    let verdict = if c.drifted {
        r#"<span class="badge bad">drifted</span>"#
    } else {
        r#"<span class="badge good">stable</span>"#
    };
    vec![
        first,
        Cell::text(&name_of(c.kind)),
        Cell::text(&name_of(c.method)),
        Cell::num(c.score, format!("{:.4}", c.score)).key("score"),
        Cell::num(c.threshold, format!("{}", c.threshold)).key("threshold"),
        Cell::html(verdict.to_owned())
            .key("drifted")
            .sort_by(u8::from(c.drifted).to_string()),
        opt(c.details.reference_mean).key("reference_mean"),
        opt(c.details.current_mean).key("current_mean"),
        Cell::num(c.reference_values as f64, count(c.reference_values)).key("reference_values"),
        Cell::num(c.current_values as f64, count(c.current_values)).key("current_values"),
    ]
}

const DRIFT_HEAD: [&str; 10] = [
    "Column",
    "Kind",
    "Test",
    "Score",
    "Threshold",
    "Verdict",
    "Reference mean",
    "Window mean",
    "Reference values",
    "Window values",
];

pub(super) fn monitor(name: &str, m: &MonitorStatus) -> String {
    let mut out = String::from(r#"<h2 id="monitor">Live monitor</h2>"#);
    if crate::DATA_PAGES {
        let _ = write!(
            out,
            r#"<p class="hint">The reference's and the window's histograms per column: <a id="monitoring-link" href="/ui/deployments/{}/monitoring">monitoring</a> (reads the tables as you, with your grants).</p>"#,
            esc(&crate::html::segment(name))
        );
    }
    out.push_str(&facts(&[
        ("reference", link("/ui/data", &m.reference, &m.reference)),
        (
            "state",
            esc(m.state).to_string() + &m.error.as_deref().map(|e| format!(": {}", esc(e))).unwrap_or_default(),
        ),
        ("reference rows", count(m.reference_rows)),
        ("rows seen", format!(r#"<span data-key="rows_seen">{}</span>"#, count(m.rows_seen))),
        (
            "schema violations",
            format!(
                r#"<span data-key="schema_violations">{}</span> requests whose inputs did not match the reference's columns"#,
                count(m.schema_violations)
            ),
        ),
        (
            "live AUC",
            match m.auc {
                Some(a) => format!(
                    r#"<span id="live-auc" data-value="{a}">{a:.3}</span> over <span data-key="labelled">{}</span> labelled predictions in the window"#,
                    m.labelled
                ),
                None => format!(
                    r#"<span id="live-auc">—</span> ({} labelled so far: AUC shows once enough labels arrive, through <code>POST /v1/labels</code>)"#,
                    m.labelled
                ),
            },
        ),
    ]));
    let mut q = Table::new(
        "quality",
        &[
            "Column",
            "Missing",
            "Out of the reference's range",
            "New category",
            "Wrong type",
        ],
    );
    for (column, c) in &m.quality {
        let mut cells = vec![Cell::text(column)];
        for (kind, n) in c.kinds() {
            cells.push(Cell::num(n as f64, count(n)).key(kind));
        }
        q.named_row(column, cells);
    }
    out.push_str(r#"<h3>Data quality</h3><p class="hint">Counted on every request since the monitor started, per input column.</p>"#);
    out.push_str(&q.render("No rows seen yet."));
    let Some(w) = &m.last_window else {
        out.push_str(r#"<p class="hint" id="no-window">No window evaluated yet: drift shows once the window holds enough rows.</p>"#);
        return out;
    };
    let _ = write!(
        out,
        r#"<h3>Input drift</h3><p class="hint">The last window ({} s, {} rows seen, {} compared, evaluated {}) against the reference sample: {} of {} columns drifted{}.</p>"#,
        w.window_seconds,
        count(w.window_rows_seen),
        count(w.window_rows_compared),
        esc(&time_ms(w.at_ms)),
        w.features.drifted_columns.len(),
        w.features.columns.len(),
        if w.features.dataset_drift {
            r#" — <span class="badge bad">dataset drift</span>"#
        } else {
            ""
        }
    );
    let mut t = Table::new("drift", &DRIFT_HEAD);
    for c in &w.features.columns {
        t.named_row(&c.name, drift_cells(Cell::text(&c.name), c));
    }
    out.push_str(&t.render("no columns compared"));
    out.push_str(r#"<h3>Score drift</h3><p class="hint">Each model variant's scores in the window against its baseline: its scores on the reference, or when the reference cannot be scored, its first full window.</p>"#);
    let mut s = Table::new("score-drift", &DRIFT_HEAD);
    for p in &w.predictions {
        let first = Cell::html(format!(
            "{} <span class=\"hint\">(against the {})</span>",
            esc(&p.drift.name),
            esc(&name_of(p.baseline).replace('_', " "))
        ));
        s.named_row(&p.drift.name, drift_cells(first, &p.drift));
    }
    out.push_str(&s.render("No model variant's scores are watched."));
    for p in m.predictions.iter().filter(|p| p.note.is_some()) {
        let _ = write!(
            out,
            r#"<p class="hint">{}: {}</p>"#,
            esc(&p.column),
            esc(p.note.as_deref().unwrap_or(""))
        );
    }
    out
}
