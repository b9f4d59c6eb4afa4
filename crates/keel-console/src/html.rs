//! Building HTML safely: one escaping function every value goes through, the page layout, and
//! sortable tables. No template engine: pages are `write!` into a `String`, and anything that
//! did not come from this crate's own literals is written through [`esc`] (text and attribute
//! values) or [`href`] (links built from names).

use std::fmt::{self, Write as _};

use chrono::{DateTime, TimeZone, Utc};

/// `s` with `& < > " '` replaced by character references: safe in element text and in quoted
/// attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_escaped(&mut out, s);
    out
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A value to be escaped when formatted: `write!(out, "<td>{}</td>", esc(name))`.
pub struct Esc<'a>(&'a str);

pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut start = 0;
        for (i, c) in self.0.char_indices() {
            let rep = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[start..i])?;
            f.write_str(rep)?;
            start = i + c.len_utf8();
        }
        f.write_str(&self.0[start..])
    }
}

/// A path segment percent-encoded (everything but unreserved characters), so a name can never
/// leave its segment or the attribute; the result still goes through [`esc`] in [`href`].
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query value percent-encoded.
pub fn query_value(s: &str) -> String {
    segment(s)
}

/// A link `<a href="/ui/{prefix}/{name}">{text}</a>` with the name encoded and the text escaped.
pub fn link(prefix: &str, name: &str, text: &str) -> String {
    format!(r#"<a href="{}/{}">{}</a>"#, esc(prefix), esc(&segment(name)), esc(text))
}

/// Milliseconds since the epoch as `2026-12-06 08:15:02 UTC`.
pub fn time_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => time(&t),
        None => "—".into(),
    }
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A share as a percentage with one decimal (`12.5%`).
pub fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", x * 100.0)
    } else {
        "—".into()
    }
}

/// A rate: a percentage for binary rewards, else the mean with four significant digits.
pub fn rate(x: f64, binary: bool) -> String {
    if !x.is_finite() {
        "—".into()
    } else if binary {
        format!("{:.2}%", x * 100.0)
    } else {
        format!("{x:.4}")
    }
}

/// An integer with thin separators (`1 234 567`).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// Who is looking at a page, as the gate authenticated them.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    /// No credential was sent and the server does not require one (loopback).
    pub anonymous: bool,
}

/// The layout around every page: header with navigation and who is signed in, the title, the
/// body. `data` says whether the data pages exist in this build.
pub fn page(title: &str, viewer: Option<&Viewer>, data: bool, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t} · keel</title><link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/assets/console.css"><script src="/ui/assets/console.js" defer></script></head>
<body><header class="top"><a class="brand" href="/ui/">keel</a><nav><a href="/ui/">Overview</a><a href="/ui/models">Models</a><a href="/ui/changes">Changes</a><a href="/ui/changes/pending">Approvals</a>{d}</nav><div class="who">{w}</div></header>
<main><h1>{t}</h1>
"#,
        t = esc(title),
        d = if data { r#"<a href="/ui/data">Data</a>"# } else { "" },
        w = who(viewer),
    );
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

fn who(viewer: Option<&Viewer>) -> String {
    match viewer {
        None => String::new(),
        Some(v) if v.anonymous => {
            r#"<span class="badge warn" title="this server accepts requests without a credential because it listens on loopback only">auth off (loopback)</span> <a href="/ui/login">log in</a>"#.into()
        }
        Some(v) => format!(
            r#"signed in as <b>{}</b> <form class="inline" method="post" action="/ui/logout"><button type="submit">log out</button></form>"#,
            esc(&v.name)
        ),
    }
}

/// One cell: its HTML and the key it sorts by (numbers sort as numbers).
pub struct Cell {
    html: String,
    sort: Option<String>,
    key: Option<&'static str>,
}

impl Cell {
    /// Text, escaped.
    pub fn text(s: &str) -> Cell {
        Cell {
            html: escape(s),
            sort: None,
            key: None,
        }
    }

    /// HTML built by this crate (already escaped).
    pub fn html(html: String) -> Cell {
        Cell {
            html,
            sort: None,
            key: None,
        }
    }

    /// A number shown as `shown`, sorted by `value`.
    pub fn num(value: f64, shown: String) -> Cell {
        Cell {
            html: escape(&shown),
            sort: Some(if value.is_finite() {
                value.to_string()
            } else {
                String::new()
            }),
            key: None,
        }
    }

    /// Sorted by `key` rather than its text (times, versions).
    pub fn sort_by(mut self, key: String) -> Cell {
        self.sort = Some(key);
        self
    }

    /// Names the cell for tests and scripts (`data-key`).
    pub fn key(mut self, key: &'static str) -> Cell {
        self.key = Some(key);
        self
    }
}

/// A table whose columns sort when their header is clicked (console.js).
pub struct Table {
    id: String,
    head: Vec<&'static str>,
    rows: Vec<(Option<String>, Vec<Cell>)>,
}

impl Table {
    pub fn new(id: &str, head: &[&'static str]) -> Table {
        Table {
            id: id.to_owned(),
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push((None, cells));
    }

    /// A row named for tests and links (`data-row`).
    pub fn named_row(&mut self, name: &str, cells: Vec<Cell>) {
        self.rows.push((Some(name.to_owned()), cells));
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, empty: &str) -> String {
        if self.rows.is_empty() {
            return format!(r#"<p class="empty" id="{}">{}</p>"#, esc(&self.id), esc(empty));
        }
        let mut out = format!(
            r#"<div class="scroll"><table class="sortable" id="{}"><thead><tr>"#,
            esc(&self.id)
        );
        for h in &self.head {
            let _ = write!(out, r#"<th scope="col" tabindex="0">{}</th>"#, esc(h));
        }
        out.push_str("</tr></thead><tbody>");
        for (name, cells) in &self.rows {
            match name {
                Some(n) => {
                    let _ = write!(out, r#"<tr data-row="{}">"#, esc(n));
                }
                None => out.push_str("<tr>"),
            }
            for c in cells {
                out.push_str("<td");
                if let Some(s) = &c.sort {
                    let _ = write!(out, r#" data-sort="{}""#, esc(s));
                }
                if let Some(k) = c.key {
                    let _ = write!(out, r#" data-key="{}""#, esc(k));
                }
                out.push('>');
                out.push_str(&c.html);
                out.push_str("</td>");
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>\n");
        out
    }
}

/// A definition list of `(term, html)` pairs (the HTML already escaped by the caller).
pub fn facts(items: &[(&str, String)]) -> String {
    let mut out = String::from(r#"<dl class="facts">"#);
    for (k, v) in items {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    }
    out.push_str("</dl>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "' onmouseover='alert(1)",
        "&lt;already&gt; & more",
        "javascript:alert(1)",
        "</textarea></title><svg onload=alert(1)>",
    ];

    #[test]
    fn escaping_leaves_no_markup_characters() {
        for s in HOSTILE {
            let e = escape(s);
            assert!(
                !e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''),
                "{e}"
            );
            assert_eq!(e, esc(s).to_string(), "both forms agree on {s}");
        }
        assert_eq!(escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;");
        assert_eq!(escape("plain ünïcode ✓"), "plain ünïcode ✓");
        assert_eq!(esc("").to_string(), "");
    }

    #[test]
    fn links_keep_names_inside_their_segment_and_attribute() {
        let l = link("/ui/models", "../../v1/x\"><script>", "a<b");
        assert_eq!(
            l,
            r#"<a href="/ui/models/..%2F..%2Fv1%2Fx%22%3E%3Cscript%3E">a&lt;b</a>"#
        );
        assert_eq!(segment("bc-lr_2.onnx~"), "bc-lr_2.onnx~");
        assert_eq!(segment("a b/c?d#e"), "a%20b%2Fc%3Fd%23e");
    }

    #[test]
    fn tables_escape_cells_row_names_and_sort_keys() {
        let mut t = Table::new("t", &["Name", "Count"]);
        t.named_row(
            "<x>",
            vec![Cell::text(HOSTILE[0]), Cell::num(3.0, "3".into()).sort_by("\"'".into())],
        );
        let html = t.render("none");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(r#"data-row="&lt;x&gt;""#), "{html}");
        assert!(html.contains(r#"data-sort="&quot;&#39;""#), "{html}");
        assert!(Table::new("e", &["A"]).render("<none>").contains("&lt;none&gt;"));
    }

    #[test]
    fn the_layout_escapes_the_title_and_the_viewer() {
        let viewer = Viewer {
            name: HOSTILE[1].into(),
            anonymous: false,
        };
        let html = page(HOSTILE[5], Some(&viewer), true, "<p>body</p>");
        assert!(!html.contains("onerror=alert(1)>"), "{html}");
        assert!(!html.contains("<svg onload"), "{html}");
        assert!(html.contains("<p>body</p>"));
        let anon = Viewer {
            name: "anonymous".into(),
            anonymous: true,
        };
        assert!(page("t", Some(&anon), false, "").contains("auth off (loopback)"));
        assert!(!page("t", Some(&anon), false, "").contains("/ui/data"));
    }

    #[test]
    fn numbers_format_for_people() {
        assert_eq!(count(1_234_567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(999), "999");
        assert_eq!(pct(0.125), "12.5%");
        assert_eq!(rate(0.5, true), "50.00%");
        assert_eq!(rate(1.23456, false), "1.2346");
        assert_eq!(pct(f64::NAN), "—");
        assert_eq!(time_ms(0), "1970-01-01 00:00:00 UTC");
    }
}
