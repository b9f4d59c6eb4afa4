//! The deployment page's revisions, and the diff between any two (`?diff=A..B`).

use std::fmt::Write as _;

use keel_store::DeploymentRevision;

use crate::Failure;
use crate::html::{Cell, Table, esc, time};

pub(super) fn revisions(
    name: &str,
    history: &[DeploymentRevision],
    diff: Option<(i64, i64)>,
) -> Result<String, Failure> {
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
        out.push_str(&crate::pages::diff::render(&pretty(ra), &pretty(rb)));
    }
    Ok(out)
}
