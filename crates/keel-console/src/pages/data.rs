//! `/ui/data` and `/ui/data/{table}` (feature `lake`): the catalog as the signed-in person may
//! see it (search, owners, tags, PII flags), a table's card (schema, versions, schema history,
//! grants) and its lineage as a graph (table -> model -> deployment -> decisions). Every read
//! goes through `keel_data::Workspace` with the person's grants and is audited, as on
//! `/v1/data`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use keel_auth::Credential;
use keel_data::{Caller, Workspace};
use keel_types::ErrorKind;
use serde::Deserialize;

use super::{Who, viewer_of};
use crate::html::{Cell, Table, count, esc, facts, link, time};
use crate::svg::lineage_graph;
use crate::{Failure, answer};

/// The data pages' handles: the workspace (catalog + lake) and keel-api's status mapping.
pub struct DataConsole {
    pub(crate) ws: Workspace,
    pub(crate) status_of: fn(ErrorKind) -> u16,
}

impl DataConsole {
    pub fn new(ws: Workspace, status_of: fn(ErrorKind) -> u16) -> DataConsole {
        DataConsole { ws, status_of }
    }
}

/// Lineage is followed this many steps beyond the table's own edges (model -> deployment ->
/// decisions).
const HOPS: usize = 3;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    q: Option<String>,
}

/// The person the data pages act as: the catalog checks their grants, so an anonymous request
/// (a loopback server without auth) must log in first.
pub(crate) async fn caller(d: &DataConsole, who: &Who) -> Result<Caller, Failure> {
    let p = who.as_ref().map(|e| e.0.clone());
    match p {
        Some(p) if p.credential != Credential::Anonymous => {
            d.ws.api_caller(&p.name)
                .await
                .map_err(|e| Failure::from_error(d.status_of, &e, "You", ("/ui/", "back to the overview")))
        }
        _ => Err(Failure::new(
            401,
            "Log in to see the data pages",
            "the data pages show what your grants allow, so they need to know who you are even where authentication is off: log in with an API token with the data:read scope",
            ("/ui/login?next=/ui/data", "log in"),
        )),
    }
}

pub(crate) async fn list_handler(State(d): State<Arc<DataConsole>>, Query(q): Query<ListQuery>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    answer(viewer.as_ref(), "Data", list(&d, &q, &who).await)
}

async fn list(d: &DataConsole, q: &ListQuery, who: &Who) -> Result<String, Failure> {
    let caller = caller(d, who).await?;
    let back = ("/ui/data", "all tables");
    let text = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut out = format!(
        r#"<form class="filters" method="get" action="/ui/data"><label>search names, descriptions, tags and columns<input name="q" value="{}" placeholder="clicks"></label><button type="submit">Search</button> <a href="/ui/data">all tables</a></form>"#,
        esc(text.unwrap_or(""))
    );
    if let Some(text) = text {
        let hits =
            d.ws.search(&caller, text)
                .await
                .map_err(|e| Failure::from_error(d.status_of, &e, "Tables", back))?;
        let _ = write!(
            out,
            r#"<p class="hint">{} tables you may read match {}.</p>"#,
            hits.len(),
            esc(text)
        );
        let mut t = Table::new("tables", &["Table", "Owner", "Description", "Matched on"]);
        for h in &hits {
            t.named_row(
                &h.table,
                vec![
                    Cell::html(link("/ui/data", &h.table, &h.table)).sort_by(h.table.clone()),
                    Cell::text(h.owner_team.as_deref().unwrap_or("—")),
                    Cell::text(h.description.as_deref().unwrap_or("")),
                    Cell::text(&h.matched.join(", ")),
                ],
            );
        }
        out.push_str(&t.render("no table you may read matches"));
        return Ok(out);
    }
    let listed =
        d.ws.list(&caller, None)
            .await
            .map_err(|e| Failure::from_error(d.status_of, &e, "Tables", back))?;
    let _ = write!(
        out,
        r#"<p class="hint">{} tables you may read, as {}.</p>"#,
        listed.len(),
        esc(caller.name())
    );
    let mut t = Table::new(
        "tables",
        &[
            "Table",
            "Owner",
            "Tags",
            "Columns",
            "PII columns",
            "Description",
            "Your access",
            "Updated",
        ],
    );
    for l in &listed {
        let e = l.entry.as_ref();
        let pii: Vec<String> = e
            .map(|e| {
                e.columns
                    .iter()
                    .filter(|c| c.pii)
                    .map(|c| format!("{} ({})", c.name, c.pii_kind.as_deref().unwrap_or("personal data")))
                    .collect()
            })
            .unwrap_or_default();
        let columns = e.map_or(0, |e| e.columns.len());
        t.named_row(
            &l.name,
            vec![
                Cell::html(link("/ui/data", &l.name, &l.name)).sort_by(l.name.clone()),
                Cell::text(e.map_or("not catalogued", |e| e.owner_team.as_str())),
                Cell::text(&e.map(|e| e.tags.join(", ")).unwrap_or_default()),
                Cell::num(columns as f64, columns.to_string()),
                if pii.is_empty() {
                    Cell::text("none").key("pii").sort_by("0".into())
                } else {
                    Cell::html(format!(r#"<span class="badge warn">{}</span>"#, esc(&pii.join(", "))))
                        .key("pii")
                        .sort_by(pii.len().to_string())
                },
                Cell::text(e.and_then(|e| e.description.as_deref()).unwrap_or("")),
                Cell::text(l.permission.as_str()),
                Cell::text(&e.map(|e| time(&e.updated_at)).unwrap_or_default())
                    .sort_by(e.map_or(0, |e| e.updated_at.timestamp_millis()).to_string()),
            ],
        );
    }
    out.push_str(&t.render("no table you may read: ingest one with `keel data ingest`, or ask its owners for a grant"));
    Ok(out)
}

pub(crate) async fn table_handler(State(d): State<Arc<DataConsole>>, Path(table): Path<String>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Table {table}");
    answer(viewer.as_ref(), &title, card(&d, &table, &who).await)
}

async fn card(d: &DataConsole, table: &str, who: &Who) -> Result<String, Failure> {
    let caller = caller(d, who).await?;
    let back = ("/ui/data", "all tables");
    let card =
        d.ws.show(&caller, table)
            .await
            .map_err(|e| Failure::from_error(d.status_of, &e, &format!("Table {table:?}"), back))?;
    let mut out = String::new();
    match &card.catalog {
        Some(e) => out.push_str(&facts(&[
            ("owner", esc(&e.owner_team).to_string()),
            ("description", esc(e.description.as_deref().unwrap_or("—")).to_string()),
            ("tags", esc(&e.tags.join(", ")).to_string()),
            (
                "created",
                format!("{} by {}", esc(&time(&e.created_at)), esc(&e.created_by)),
            ),
            ("updated", esc(&time(&e.updated_at)).to_string()),
            ("versions", count(card.versions.len() as u64)),
        ])),
        None => out
            .push_str(r#"<p class="alert">This lake table is not in the catalog yet: its next write through keel data records it, or a workspace admin adopts it (<code>keel data adopt TABLE --owner TEAM</code>) to share it.</p>"#),
    }
    if let Some(e) = &card.catalog {
        out.push_str("<h2>Columns</h2>");
        let mut t = Table::new(
            "columns",
            &["Column", "Type", "Personal data", "Flagged by", "Description"],
        );
        for c in &e.columns {
            t.named_row(
                &c.name,
                vec![
                    Cell::text(&c.name),
                    Cell::text(&c.data_type),
                    if c.pii {
                        Cell::html(format!(
                            r#"<span class="badge warn">{}</span>"#,
                            esc(c.pii_kind.as_deref().unwrap_or("yes"))
                        ))
                        .key("pii")
                    } else {
                        Cell::text("no").key("pii")
                    },
                    Cell::text(c.pii_source.as_deref().unwrap_or("")),
                    Cell::text(c.description.as_deref().unwrap_or("")),
                ],
            );
        }
        out.push_str(&t.render("no columns recorded"));
    }
    out.push_str("<h2>Lineage</h2>");
    let edges = lineage(d, &caller, &card).await;
    if edges.is_empty() {
        out.push_str(r#"<p class="empty">No lineage recorded: `keel model push --training-data TABLE` and `keel data ingest --derived-from NODE` record it.</p>"#);
    } else {
        out.push_str(&lineage_graph(
            "lineage",
            &format!("Lineage of {table}"),
            &edges,
            &format!("table/{table}"),
        ));
        let mut t = Table::new("lineage-edges", &["From", "Relation", "To"]);
        for (s, tg, r) in &edges {
            t.row(vec![Cell::text(s), Cell::text(r), Cell::text(tg)]);
        }
        out.push_str(&t.render(""));
    }
    out.push_str("<h2>Versions</h2>");
    let mut t = Table::new("table-versions", &["Version", "Committed", "Operation", "Rows added"]);
    for v in &card.versions {
        t.row(vec![
            Cell::num(v.version as f64, format!("v{}", v.version)),
            Cell::text(&v.timestamp.map(|t| time(&t)).unwrap_or_default())
                .sort_by(v.timestamp.map_or(0, |t| t.timestamp_millis()).to_string()),
            Cell::text(v.operation.as_deref().unwrap_or("")),
            match v.rows_added {
                Some(n) => Cell::num(n as f64, count(n)),
                None => Cell::text("—"),
            },
        ]);
    }
    out.push_str(&t.render("no versions"));
    out.push_str("<h2>Schema history</h2>");
    let mut t = Table::new("schema-history", &["From version", "Recorded", "Columns"]);
    for s in &card.schema_history {
        let cols = s
            .schema
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        format!(
                            "{} {}",
                            c.get("name").and_then(|n| n.as_str()).unwrap_or("?"),
                            c.get("type").and_then(|n| n.as_str()).unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_else(|| s.schema.to_string());
        t.row(vec![
            Cell::num(s.version as f64, format!("v{}", s.version)),
            Cell::text(&time(&s.recorded_at)).sort_by(s.recorded_at.timestamp_millis().to_string()),
            Cell::text(&cols),
        ]);
    }
    out.push_str(&t.render("no schema recorded"));
    out.push_str("<h2>Grants</h2>");
    let mut t = Table::new("grants", &["Team", "Permission", "Granted", "By"]);
    for g in &card.grants {
        t.row(vec![
            Cell::text(&g.team),
            Cell::text(&g.permission),
            Cell::text(&time(&g.granted_at)).sort_by(g.granted_at.timestamp_millis().to_string()),
            Cell::text(&g.granted_by),
        ]);
    }
    out.push_str(&t.render("no grants: only the owner team and workspace admins may read it"));
    Ok(out)
}

/// The table's own lineage edges, then onwards from the models and deployments it reaches
/// (tables further on are not followed: each would need its own read check).
async fn lineage(d: &DataConsole, caller: &Caller, card: &keel_data::TableCard) -> Vec<(String, String, String)> {
    let mut edges: BTreeSet<(String, String, String)> = card
        .lineage
        .upstream
        .iter()
        .chain(&card.lineage.downstream)
        .map(|e| (e.source.clone(), e.target.clone(), e.relation.clone()))
        .collect();
    let mut frontier: Vec<String> = card.lineage.downstream.iter().map(|e| e.target.clone()).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for _ in 0..HOPS {
        let mut next = Vec::new();
        for node in frontier {
            if node.starts_with("table/") || !seen.insert(node.clone()) {
                continue;
            }
            if let Ok(l) = d.ws.lineage(caller, &node).await {
                for e in l.downstream {
                    next.push(e.target.clone());
                    edges.insert((e.source, e.target, e.relation));
                }
            }
        }
        frontier = next;
    }
    edges.into_iter().collect()
}
