//! The standalone HTML page: inline CSS and SVG, no scripts, no external resources.

use std::fmt::Write as _;

use super::{CHECK_HEADERS, COLUMN_HEADERS, FEATURE_HEADERS, check_rows, column_rows, feature_rows, summary_lines};
use crate::profile::format_number;
use crate::{Arrival, Assessment, Histogram, Verdict};

/// Features drawn in the informativeness chart.
const CHART_FEATURES: usize = 30;
/// Numeric histograms drawn.
const CHART_HISTOGRAMS: usize = 60;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(headers: &[&str], rows: &[Vec<String>], status_first: bool) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        let class = if status_first {
            match row.first().map(String::as_str) {
                Some("FAIL") => " class=\"fail\"",
                Some("warn") => " class=\"warn\"",
                Some("pass") => " class=\"pass\"",
                _ => "",
            }
        } else {
            ""
        };
        let _ = write!(out, "<tr{class}>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}\
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}tr.fail td{background:#fde2e2}tr.warn td{background:#fff4d6}tr.pass td:first-child{color:#2a7}\
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;font-weight:bold;color:#fff}\
.Ready{background:#2a7}.Caution{background:#d90}.NotReady{background:#c33}\
.hist{display:inline-block;margin:4px;font-size:.75em;text-align:center}svg text{font-family:system-ui,sans-serif}";

/// The whole page.
pub(crate) fn page(a: &Assessment) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Assessment: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&a.title)
    );
    let _ = writeln!(out, "<h1>Feasibility assessment: {}</h1>", esc(&a.title));
    let _ = writeln!(
        out,
        "<p>{} rows, {} columns, {} files; generated {} in {:.2} s.</p>",
        a.rows,
        a.columns,
        a.profile.files,
        esc(&a.generated_at),
        a.seconds
    );
    let class = match a.verdict {
        Verdict::Ready => "Ready",
        Verdict::Caution => "Caution",
        Verdict::NotReady => "NotReady",
    };
    let _ = writeln!(
        out,
        "<h2>Verdict</h2><p><span class=\"verdict {class}\">{}</span></p><ul>",
        a.verdict.label()
    );
    for r in &a.reasons {
        let _ = writeln!(out, "<li>{}</li>", esc(r));
    }
    out.push_str("</ul><ul>");
    for l in summary_lines(a) {
        let _ = writeln!(out, "<li>{}</li>", esc(&l));
    }
    out.push_str("</ul>\n<h2>Do we have the right data?</h2>\n");
    out.push_str(&table(&CHECK_HEADERS, &check_rows(a, "data"), true));
    out.push_str("<h3>How informative each feature is (single-feature AUC strength)</h3>\n");
    out.push_str(&feature_chart(a));
    out.push_str(&table(&FEATURE_HEADERS, &feature_rows(a, usize::MAX), false));
    out.push_str("<h2>Does it arrive fast enough?</h2>\n");
    out.push_str(&table(&CHECK_HEADERS, &check_rows(a, "arrival"), true));
    if let Some(r) = &a.arrival {
        let _ = writeln!(
            out,
            "<h3>Arrivals per {} (bars) and target rate (line)</h3>",
            esc(&r.bucket)
        );
        out.push_str(&arrival_chart(r));
    }
    out.push_str("<h2>Columns</h2>\n");
    out.push_str(&table(&COLUMN_HEADERS, &column_rows(&a.profile), false));
    out.push_str("<h3>Distributions of numeric columns</h3>\n<div>");
    for c in a
        .profile
        .columns
        .iter()
        .filter(|c| c.numeric.is_some())
        .take(CHART_HISTOGRAMS)
    {
        if let Some(n) = &c.numeric {
            let _ = write!(
                out,
                "<div class=\"hist\">{}<br>{}</div>",
                histogram_svg(&n.histogram),
                esc(&c.name)
            );
        }
    }
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<p style=\"font-size:.8em;color:#666\">Statistics are exact. Single-feature AUC: ranks for numerics \
         (missing lowest), out-of-fold target encoding for categoricals. Mutual information: binned, Miller-Madow \
         corrected, in nats. Baseline: {}.</p>",
        esc(a.baseline.as_ref().map_or("not run", |b| b.model))
    );
    out.push_str("</body></html>\n");
    out
}

fn feature_chart(a: &Assessment) -> String {
    let features: Vec<_> = a.features.iter().take(CHART_FEATURES).collect();
    if features.is_empty() {
        return "<p>No features.</p>".into();
    }
    let (label_w, bar_w, row_h) = (220.0, 520.0, 16.0);
    let height = row_h * features.len() as f64 + 24.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"feature strength\">",
        label_w + bar_w + 60.0
    );
    // Scale from 0.5 (useless) to 1.0 (perfect).
    let x = |v: f64| label_w + (v - 0.5).max(0.0) / 0.5 * bar_w;
    for (i, f) in features.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let color = if f.leakage { "#c33" } else { "#4a7ab7" };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{:.3}</text>",
            label_w - 6.0,
            y + 11.0,
            esc(&super::truncate(&f.name, 32)),
            (x(f.strength) - label_w).max(1.0),
            row_h - 3.0,
            x(f.strength) + 4.0,
            y + 11.0,
            f.strength
        );
    }
    let axis_y = 4.0 + features.len() as f64 * row_h + 4.0;
    for v in [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"4\" y2=\"{axis_y}\" stroke=\"#ccc\" stroke-width=\"0.5\"/>\
             <text x=\"{0:.1}\" y=\"{1}\" font-size=\"10\" text-anchor=\"middle\">{v}</text>",
            x(v),
            axis_y + 12.0
        );
    }
    let lx = x(a.thresholds.leakage_auc);
    let _ = write!(
        s,
        "<line x1=\"{lx:.1}\" x2=\"{lx:.1}\" y1=\"4\" y2=\"{axis_y}\" stroke=\"#c33\" stroke-dasharray=\"3,3\"/></svg>"
    );
    s
}

fn arrival_chart(r: &Arrival) -> String {
    let (w, h, left, bottom) = (1000.0, 240.0, 50.0, 30.0);
    let n = r.buckets.len().max(1) as f64;
    let max_rows = r.buckets.iter().map(|b| b.rows).max().unwrap_or(1).max(1) as f64;
    let max_rate = r.buckets.iter().filter_map(|b| b.rate).fold(0.0f64, f64::max).max(1e-9);
    let bw = (w - left - 50.0) / n;
    let plot_h = h - bottom - 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"arrivals\">"
    );
    for (i, b) in r.buckets.iter().enumerate() {
        let bh = b.rows as f64 / max_rows * plot_h;
        let color = if b.rows == 0 { "#c33" } else { "#9bb7d9" };
        let _ = write!(
            s,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{color}\"><title>{} {} rows</title></rect>",
            left + i as f64 * bw,
            10.0 + plot_h - bh.max(if b.rows == 0 { 2.0 } else { 0.0 }),
            (bw - 0.5).max(0.5),
            bh.max(if b.rows == 0 { 2.0 } else { 0.0 }),
            esc(&b.start),
            b.rows
        );
    }
    let points: Vec<String> = r
        .buckets
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            b.rate.map(|rate| {
                format!(
                    "{:.2},{:.2}",
                    left + (i as f64 + 0.5) * bw,
                    10.0 + plot_h - rate / max_rate * plot_h
                )
            })
        })
        .collect();
    if !points.is_empty() {
        let _ = write!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#d60\" stroke-width=\"1.2\"/>",
            points.join(" ")
        );
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{}\" font-size=\"10\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"4\" y=\"18\" font-size=\"10\">{} rows</text>\
         <text x=\"{}\" y=\"18\" font-size=\"10\" fill=\"#d60\" text-anchor=\"end\">rate {:.2}%</text></svg>",
        h - 8.0,
        esc(&r.first),
        w - 50.0,
        h - 8.0,
        esc(&r.last),
        max_rows,
        w - 2.0,
        max_rate * 100.0
    );
    s
}

fn histogram_svg(hist: &Histogram) -> String {
    let (w, h) = (160.0, 70.0);
    let max = hist.counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = w / hist.counts.len().max(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\">",
        h + 12.0
    );
    for (i, c) in hist.counts.iter().enumerate() {
        let bh = *c as f64 / max * h;
        let _ = write!(
            s,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"#4a7ab7\"/>",
            i as f64 * bw,
            h - bh,
            (bw - 0.5).max(0.5)
        );
    }
    let (lo, hi) = (
        hist.edges.first().copied().unwrap_or(0.0),
        hist.edges.last().copied().unwrap_or(0.0),
    );
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{0}\" font-size=\"9\">{1}</text><text x=\"{w}\" y=\"{0}\" font-size=\"9\" text-anchor=\"end\">{2}</text></svg>",
        h + 10.0,
        esc(&format_number(lo)),
        esc(&format_number(hi))
    );
    s
}
