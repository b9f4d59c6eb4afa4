//! A line diff of two texts (longest common subsequence), for comparing deployment revisions.

use std::fmt::Write as _;

use crate::html::esc;

/// Past this many lines on either side the texts are shown whole rather than diffed.
const MAX_LINES: usize = 3000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The lines of `a` and `b` as kept, removed and added, in order.
pub(crate) fn diff<'a>(a: &'a str, b: &'a str) -> Option<Vec<Line<'a>>> {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..]
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n + m);
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if lcs[at(i + 1, j)] >= lcs[at(i, j + 1)] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
    Some(out)
}

/// The diff as a `<pre>`: removed lines marked `-`, added `+`.
pub(crate) fn render(a: &str, b: &str) -> String {
    let mut out = String::from(r#"<pre class="diff" id="diff">"#);
    match diff(a, b) {
        Some(lines) => {
            for l in lines {
                let (class, sign, text) = match l {
                    Line::Same(t) => ("same", ' ', t),
                    Line::Removed(t) => ("del", '-', t),
                    Line::Added(t) => ("add", '+', t),
                };
                let _ = write!(out, r#"<span class="{class}">{sign} {}</span>"#, esc(text));
            }
        }
        None => {
            let _ = write!(out, "{}\n\n{}", esc(a), esc(b));
        }
    }
    out.push_str("</pre>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_and_the_rest_kept() {
        let a = "{\n  \"policy\": \"a\",\n  \"seed\": 1\n}";
        let b = "{\n  \"policy\": \"b\",\n  \"seed\": 1\n}";
        assert_eq!(
            diff(a, b).expect("small"),
            vec![
                Line::Same("{"),
                Line::Removed("  \"policy\": \"a\","),
                Line::Added("  \"policy\": \"b\","),
                Line::Same("  \"seed\": 1"),
                Line::Same("}"),
            ]
        );
        assert_eq!(diff("", "x").expect("small"), vec![Line::Added("x")]);
        let html = render("<a>", "<b>");
        assert!(html.contains("- &lt;a&gt;") && html.contains("+ &lt;b&gt;"), "{html}");
    }
}
