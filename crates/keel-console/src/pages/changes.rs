//! `/ui/changes`: the change log (model pushes, alias moves, deployment revisions, guardrail
//! and canary actions, alerts), filterable by subject, person and time with query parameters
//! (`?subject=deployment/promo&actor=ana&since=2026-12-01&until=2026-12-06T12:00:00Z`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::{Who, viewer_of};
use crate::html::{Cell, Table, esc, link, time};
use crate::{Console, Failure, answer};

/// How many of the newest changes the person and time filters look through.
const SCAN: i64 = 20_000;
const DEFAULT_LIMIT: usize = 200;
const MAX_LIMIT: usize = 5_000;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ChangesQuery {
    subject: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn handler(State(c): State<Arc<Console>>, Query(q): Query<ChangesQuery>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    answer(viewer.as_ref(), "Changes", render(&c, &q).await)
}

fn bad(message: String) -> Failure {
    Failure::new(400, "Bad request", message, ("/ui/changes", "all changes"))
}

/// A day (`2026-12-06`, midnight UTC; `until` takes the end of that day) or an RFC 3339 time.
fn parse_time(what: &str, s: &str, end_of_day: bool) -> Result<DateTime<Utc>, Failure> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end_of_day { d.succ_opt().unwrap_or(d) } else { d };
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(bad(format!(
        "{what}={s:?} is not a time: write a day (2026-12-06) or an RFC 3339 time (2026-12-06T08:00:00Z)"
    )))
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Where a change's subject has a page.
fn subject_link(subject: &str) -> String {
    let parts: Vec<&str> = subject.split('/').collect();
    match parts.as_slice() {
        ["model", m, ..] => link("/ui/models", m, subject),
        ["deployment", d, ..] => link("/ui/deployments", d, subject),
        _ => esc(subject).to_string(),
    }
}

async fn render(c: &Console, q: &ChangesQuery) -> Result<String, Failure> {
    let subject = nonempty(&q.subject);
    let actor = nonempty(&q.actor);
    let since = nonempty(&q.since).map(|s| parse_time("since", s, false)).transpose()?;
    let until = nonempty(&q.until).map(|s| parse_time("until", s, true)).transpose()?;
    let limit = match nonempty(&q.limit) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit={l:?} must be a number from 1 to {MAX_LIMIT}"))),
        },
    };
    let changes = c
        .deployments
        .store()
        .list_changes(SCAN, subject)
        .await
        .map_err(|e| Failure::from_error(c.status_of, &e, "Changes", ("/ui/changes", "all changes")))?;
    let scanned = changes.len();
    let shown: Vec<_> = changes
        .into_iter()
        .filter(|e| actor.is_none_or(|a| e.actor == a))
        .filter(|e| since.is_none_or(|s| e.at >= s))
        .filter(|e| until.is_none_or(|u| e.at < u))
        .take(limit)
        .collect();
    let field = |name: &str, label: &str, value: Option<&str>, hint: &str| {
        format!(
            r#"<label>{label}<input name="{name}" value="{}" placeholder="{hint}"></label>"#,
            esc(value.unwrap_or(""))
        )
    };
    let mut out = String::from(r#"<form class="filters" method="get" action="/ui/changes">"#);
    out.push_str(&field("subject", "subject starts with", subject, "deployment/promo"));
    out.push_str(&field("actor", "person", actor, "ana@corp"));
    out.push_str(&field("since", "since", nonempty(&q.since), "2026-12-01"));
    out.push_str(&field(
        "until",
        "until (inclusive day)",
        nonempty(&q.until),
        "2026-12-06",
    ));
    out.push_str(r#"<button type="submit">Filter</button> <a href="/ui/changes">clear</a></form>"#);
    let _ = write!(
        out,
        r#"<p class="hint" id="count"><span data-key="shown">{}</span> changes shown, newest first (at most {limit}; the person and time filters look through the newest {} changes{}).</p>"#,
        shown.len(),
        scanned,
        subject
            .map(|s| format!(" whose subject starts with {}", esc(s)))
            .unwrap_or_default(),
    );
    let mut t = Table::new("changes", &["#", "When", "Person", "What", "Subject", "Details"]);
    for e in &shown {
        let details = match &e.details {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(o) if o.is_empty() => String::new(),
            d => d.to_string(),
        };
        t.named_row(
            &e.id.to_string(),
            vec![
                Cell::num(e.id as f64, e.id.to_string()),
                Cell::text(&time(&e.at)).sort_by(e.at.timestamp_millis().to_string()),
                Cell::html(format!(
                    r#"<a href="/ui/changes?actor={}">{}</a>"#,
                    esc(&crate::html::query_value(&e.actor)),
                    esc(&e.actor)
                )),
                Cell::text(&e.kind),
                Cell::html(subject_link(&e.subject)),
                Cell::html(format!("<code>{}</code>", esc(&details))),
            ],
        );
    }
    out.push_str(&t.render("no changes match"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_days_or_rfc3339_and_bad_ones_say_how_to_write_them() {
        let t = parse_time("since", "2026-12-06", false).expect("day");
        assert_eq!(t.to_rfc3339(), "2026-12-06T00:00:00+00:00");
        let t = parse_time("until", "2026-12-06", true).expect("day");
        assert_eq!(t.to_rfc3339(), "2026-12-07T00:00:00+00:00");
        let t = parse_time("since", "2026-12-06T08:00:00+01:00", false).expect("rfc3339");
        assert_eq!(t.to_rfc3339(), "2026-12-06T07:00:00+00:00");
        let e = parse_time("since", "<yesterday>", false).expect_err("bad");
        assert_eq!(e.status, 400);
        assert!(e.message.contains("2026-12-06"), "{}", e.message);
    }

    #[test]
    fn subjects_link_to_their_pages() {
        assert_eq!(
            subject_link("model/bc-lr/2"),
            r#"<a href="/ui/models/bc-lr">model/bc-lr/2</a>"#
        );
        assert_eq!(
            subject_link("deployment/promo"),
            r#"<a href="/ui/deployments/promo">deployment/promo</a>"#
        );
        assert_eq!(subject_link("token/<x>"), "token/&lt;x&gt;");
    }
}
