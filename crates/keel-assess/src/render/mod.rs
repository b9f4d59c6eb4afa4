//! Renderings of an assessment for people: aligned plain text, Markdown, and one standalone HTML
//! page (`html.rs`). The JSON is the serde serialisation of [`Assessment`].

mod html;

use std::fmt::Write as _;

use crate::arrival::human_duration;
use crate::profile::format_number;
use crate::{Assessment, ColumnKind, ColumnProfile, Profile};

/// Features listed in the text reports.
const TEXT_FEATURES: usize = 25;

fn num(v: f64) -> String {
    if v.is_nan() { "-".into() } else { format_number(v) }
}

/// Aligned plain-text table (two spaces between columns).
fn text_table(headers: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut s = String::from(indent);
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
    out
}

fn md_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = format!(
        "| {} |\n|{}|\n",
        headers.join(" | "),
        vec!["---"; headers.len()].join("|")
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

pub(crate) fn check_rows(a: &Assessment, question: &str) -> Vec<Vec<String>> {
    a.checks
        .iter()
        .filter(|c| c.question == question)
        .map(|c| {
            vec![
                c.status.label().to_string(),
                c.name.clone(),
                c.figure.clone(),
                c.threshold.clone(),
                c.detail.clone(),
            ]
        })
        .collect()
}

pub(crate) fn feature_rows(a: &Assessment, max: usize) -> Vec<Vec<String>> {
    a.features
        .iter()
        .take(max)
        .map(|f| {
            vec![
                display_name(&f.name),
                kind(f.kind).to_string(),
                format!("{:.3}", f.auc),
                format!("{:.3}", f.strength),
                format!("{:.5}", f.mutual_information),
                format!("{:.1}%", f.mi_share * 100.0),
                if f.leakage { "LEAK?".into() } else { String::new() },
            ]
        })
        .collect()
}

pub(crate) const FEATURE_HEADERS: [&str; 7] = ["FEATURE", "KIND", "AUC", "STRENGTH", "MI (nats)", "MI/H(y)", "LEAKAGE"];
pub(crate) const CHECK_HEADERS: [&str; 5] = ["STATUS", "CHECK", "FIGURE", "THRESHOLD", "NOTE"];
pub(crate) const COLUMN_HEADERS: [&str; 10] = [
    "COLUMN",
    "KIND",
    "MISSING",
    "DISTINCT",
    "MIN",
    "P25",
    "P50",
    "MEAN",
    "P75",
    "MAX / TOP",
];

pub(crate) fn kind(k: ColumnKind) -> &'static str {
    match k {
        ColumnKind::Numeric => "numeric",
        ColumnKind::Categorical => "categorical",
        ColumnKind::Time => "time",
        ColumnKind::Unsupported => "other",
    }
}

pub(crate) fn column_rows(p: &Profile) -> Vec<Vec<String>> {
    p.columns.iter().map(column_row).collect()
}

fn column_row(c: &ColumnProfile) -> Vec<String> {
    let mut flags = Vec::new();
    if c.constant {
        flags.push("constant");
    }
    let missing = format!("{} ({:.1}%)", c.missing, c.missing_share * 100.0);
    let top = c
        .top
        .iter()
        .take(3)
        .map(|v| format!("{}:{}", truncate(&v.value, 16), v.count))
        .collect::<Vec<_>>()
        .join(" ");
    let mut row = vec![
        display_name(&c.name),
        kind(c.kind).to_string(),
        missing,
        c.distinct.to_string(),
    ];
    match (&c.numeric, &c.time) {
        (Some(n), _) => row.extend([num(n.min), num(n.p25), num(n.p50), num(n.mean), num(n.p75), num(n.max)]),
        (None, Some(t)) => row.extend([
            t.min.clone(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            t.max.clone(),
        ]),
        (None, None) => row.extend([
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            top,
        ]),
    }
    if !flags.is_empty() {
        let last = row.len() - 1;
        row[last] = format!("{} [{}]", row[last], flags.join(", "));
    }
    row
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let t: String = s.chars().take(max - 1).collect();
        format!("{t}…")
    }
}

fn summary_lines(a: &Assessment) -> Vec<String> {
    let t = &a.target;
    let mut lines = vec![format!(
        "target {}: positive = {}, {} positives / {} negatives (rate {:.3}%), {} missing",
        t.column,
        t.positive_label,
        t.positives,
        t.negatives,
        t.rate * 100.0,
        t.missing
    )];
    if let Some(b) = &a.baseline {
        lines.push(format!(
            "baseline: {} on {} rows ({} dims): {}-fold AUC {:.3} ± {:.3}, log loss {:.4} ± {:.4} vs prior {:.4}",
            b.model,
            b.rows,
            b.dimensions,
            b.folds,
            b.auc_mean,
            b.auc_sd,
            b.log_loss_mean,
            b.log_loss_sd,
            b.prior_log_loss_mean
        ));
        if !b.excluded.is_empty() {
            lines.push(format!("baseline excludes: {}", b.excluded.join(", ")));
        }
    }
    if let Some(r) = &a.arrival {
        lines.push(format!(
            "time {}: {} .. {} ({}), newest {} before {}; {} {} buckets, {} empty",
            r.column,
            r.first,
            r.last,
            human_duration(r.span_seconds),
            human_duration(r.freshness_seconds),
            r.now,
            r.buckets.len(),
            r.bucket,
            r.empty_buckets
        ));
    }
    lines
}

impl Assessment {
    /// Plain aligned text for a terminal (no colours).
    pub fn to_terminal(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Feasibility assessment: {}", self.title);
        let _ = writeln!(
            out,
            "{} rows, {} columns, {} files; generated {}; {:.2} s\n",
            self.rows, self.columns, self.profile.files, self.generated_at, self.seconds
        );
        let _ = writeln!(out, "VERDICT: {}", self.verdict.label());
        for r in &self.reasons {
            let _ = writeln!(out, "  {r}");
        }
        let _ = writeln!(out);
        for l in summary_lines(self) {
            let _ = writeln!(out, "{l}");
        }
        let _ = writeln!(out, "\nDo we have the right data?");
        out.push_str(&text_table(&CHECK_HEADERS[..4], &trim4(check_rows(self, "data")), "  "));
        let _ = writeln!(out, "\nDoes it arrive fast enough?");
        out.push_str(&text_table(
            &CHECK_HEADERS[..4],
            &trim4(check_rows(self, "arrival")),
            "  ",
        ));
        let _ = writeln!(
            out,
            "\nFeatures by single-feature AUC (top {} of {}):",
            TEXT_FEATURES.min(self.features.len()),
            self.features.len()
        );
        out.push_str(&text_table(&FEATURE_HEADERS, &feature_rows(self, TEXT_FEATURES), "  "));
        let _ = writeln!(out, "\nColumns:");
        out.push_str(&text_table(&COLUMN_HEADERS, &column_rows(&self.profile), "  "));
        out
    }

    /// A Markdown report.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Feasibility assessment: {}\n", self.title);
        let _ = writeln!(
            out,
            "{} rows, {} columns, {} files; generated {}.\n",
            self.rows, self.columns, self.profile.files, self.generated_at
        );
        let _ = writeln!(out, "## Verdict: {}\n", self.verdict.label());
        for r in &self.reasons {
            let _ = writeln!(out, "- {r}");
        }
        let _ = writeln!(out);
        for l in summary_lines(self) {
            let _ = writeln!(out, "- {l}");
        }
        let _ = writeln!(out, "\n## Do we have the right data?\n");
        out.push_str(&md_table(&CHECK_HEADERS, &check_rows(self, "data")));
        let _ = writeln!(out, "\n## Does it arrive fast enough?\n");
        out.push_str(&md_table(&CHECK_HEADERS, &check_rows(self, "arrival")));
        if let Some(r) = &self.arrival {
            let _ = writeln!(out, "\nArrivals per {} (first 48 buckets):\n", r.bucket);
            let rows: Vec<Vec<String>> = r
                .buckets
                .iter()
                .take(48)
                .map(|b| {
                    vec![
                        b.start.clone(),
                        b.rows.to_string(),
                        b.rate.map_or("-".into(), |x| format!("{:.3}%", x * 100.0)),
                    ]
                })
                .collect();
            out.push_str(&md_table(&["BUCKET START", "ROWS", "TARGET RATE"], &rows));
        }
        let _ = writeln!(out, "\n## Features by single-feature AUC\n");
        out.push_str(&md_table(&FEATURE_HEADERS, &feature_rows(self, usize::MAX)));
        let _ = writeln!(out, "\n## Columns\n");
        out.push_str(&md_table(&COLUMN_HEADERS, &column_rows(&self.profile)));
        if let Some(d) = self.profile.duplicate_rows {
            let _ = writeln!(out, "\nDuplicate rows: {d}.");
        }
        let _ = writeln!(
            out,
            "\nMethods: exact statistics; single-feature AUC by ranks (numerics, missing ranked lowest) or \
             out-of-fold target encoding (categoricals, {} folds); mutual information binned, Miller-Madow corrected; \
             baseline {}.",
            self.baseline.as_ref().map_or(5, |b| b.folds),
            self.baseline.as_ref().map_or("not run", |b| b.model)
        );
        out
    }

    /// One standalone HTML page with inline SVG charts (no scripts, no external resources).
    pub fn to_html(&self) -> String {
        html::page(self)
    }
}

impl Profile {
    /// Plain aligned text of the profile.
    pub fn to_terminal(&self) -> String {
        let mut out = format!(
            "{} rows, {} columns, {:.3} s\n",
            self.rows,
            self.columns.len(),
            self.seconds
        );
        out.push_str(&text_table(&COLUMN_HEADERS, &column_rows(self), ""));
        if !self.duplicate_columns.is_empty() {
            let groups: Vec<String> = self.duplicate_columns.iter().map(|g| g.join(" = ")).collect();
            out.push_str(&format!("duplicate columns: {}\n", groups.join("; ")));
        }
        if let Some(d) = self.duplicate_rows {
            out.push_str(&format!("duplicate rows: {d}\n"));
        }
        out
    }
}

/// The first four cells (no note), the figure cut to 110 characters: the terminal stays readable.
fn trim4(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            r.truncate(4);
            if let Some(figure) = r.get_mut(2) {
                *figure = truncate(figure, 110);
            }
            r
        })
        .collect()
}

/// A column name for people: an empty name (a CSV's unnamed index column) shows as `(unnamed)`.
pub(crate) fn display_name(name: &str) -> String {
    if name.is_empty() {
        "(unnamed)".into()
    } else {
        name.to_string()
    }
}
