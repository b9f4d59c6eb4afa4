//! Data commands that go through keel-data: every read and write of a table is checked against
//! the actor's grants and recorded in the audit log there; this file parses flags and prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_data::{Caller, Describe, Ingest, Lineage, TableCard, Version, Workspace};
use keel_store::CatalogColumn;
use serde::Serialize;
use serde_json::json;

use crate::cli::{DescribeArgs, Global, IngestArgs};
use crate::context::{Context, principal};
use crate::output;

/// The data workspace the global options point at, and the principal acting on it.
pub async fn open(global: &Global) -> anyhow::Result<(Workspace, Caller)> {
    workspace(global, &Context::open(global).await?).await
}

/// [`open`] for a command that already opened `ctx` (the store is not opened again).
pub async fn workspace(global: &Global, ctx: &Context) -> anyhow::Result<(Workspace, Caller)> {
    let ws = Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&principal(global)).await?;
    Ok((ws, caller))
}

/// Prints `value` as JSON with `--json`, else as `text` writes it.
pub fn print<T: Serialize + ?Sized>(global: &Global, value: &T, text: impl FnOnce(&T)) -> anyhow::Result<()> {
    if global.json {
        return output::json(&value);
    }
    text(value);
    Ok(())
}

/// A spinner on stderr counting rows, hidden when stderr is not a terminal or output is JSON.
fn row_progress(global: &Global, what: &str) -> (indicatif::ProgressBar, Arc<AtomicU64>) {
    let bar = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg} {human_pos} rows ({per_sec}, {elapsed})")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    (bar, Arc::new(AtomicU64::new(0)))
}

pub async fn ingest(global: &Global, args: IngestArgs) -> anyhow::Result<()> {
    keel_lake::validate_table_name(&args.table)?;
    let (ws, caller) = open(global).await?;
    let table = args.table.clone();
    let (bar, counter) = row_progress(global, &format!("ingesting {} into {table}", args.file.display()));
    let ticker = {
        let (bar, counter) = (bar.clone(), counter.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(counter.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let request = Ingest {
        table: table.clone(),
        file: args.file,
        format: args.format.as_deref().map(str::parse).transpose()?,
        schema: args.schema,
        overwrite: args.overwrite,
        partition_by: args.partition_by,
        owner: args.owner,
        description: args.description,
        derived_from: args.derived_from,
        rows_read: Some(counter),
    };
    let result = ws.ingest(&caller, &request).await;
    ticker.abort();
    bar.finish_and_clear();
    let done = result?;
    let (r, owner, detected) = (&done.report, &done.owner, &done.detected);
    let pii: Vec<_> = detected
        .iter()
        .map(|d| json!({"column": d.column, "kind": d.kind, "by": d.by}))
        .collect();
    let json = json!({
        "table": r.table, "rows": r.rows, "bytes": r.bytes, "version": r.version, "seconds": r.seconds,
        "owner_team": owner, "pii_detected": pii,
    });
    print(global, &json, |_| {
        let rate = r.rows as f64 / r.seconds.max(1e-9);
        let (rows, bytes, version, seconds) = (r.rows, r.bytes, r.version, r.seconds);
        let done = format!("{rows} rows, {bytes} bytes -> version {version} in {seconds:.2} s ({rate:.0} rows/s)");
        println!("{}: {done}; owner team {owner}", r.table);
        for d in detected {
            let review = format!("keel data describe {table} --column {} --not-pii", d.column);
            println!(
                "  PII: column {} looks like {} (by its {}); review with `{review}` if wrong",
                d.column, d.kind, d.by
            );
        }
    })
}

pub async fn sql(global: &Global, query: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let (bar, _) = row_progress(global, "running query");
    let result = ws.sql(&caller, query).await;
    bar.finish_and_clear();
    print_rows(global, &result?)
}

/// Record batches as JSON row objects with `--json`, else as a pretty table.
pub fn print_rows(global: &Global, batches: &[keel_lake::arrow::array::RecordBatch]) -> anyhow::Result<()> {
    if global.json {
        return output::json(&serde_json::from_slice::<serde_json::Value>(&keel_lake::json_rows(
            batches,
        )?)?);
    }
    println!("{}", keel_lake::pretty(batches)?);
    Ok(())
}

/// Prints a table's versions (newest first).
pub fn print_versions(global: &Global, history: &[Version]) -> anyhow::Result<()> {
    print(global, history, |history| {
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|v| {
                let at = v.timestamp.map(|t| t.to_rfc3339()).unwrap_or_default();
                let (op, added) = (
                    v.operation.clone().unwrap_or_default(),
                    v.rows_added.map_or("-".into(), |n| n.to_string()),
                );
                vec![v.version.to_string(), at, op, added]
            })
            .collect();
        output::table(&["VERSION", "TIMESTAMP", "OPERATION", "ROWS ADDED"], &rows);
    })
}

pub async fn ls(global: &Global, tag: Option<&str>) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    print(global, &ws.list(&caller, tag).await?, |listed| {
        let rows: Vec<Vec<String>> = listed
            .iter()
            .map(|l| {
                let (name, access, none) = (l.name.clone(), l.permission.to_string(), String::new());
                let Some(e) = &l.entry else {
                    let adopt = "(not catalogued: write to it once to adopt it)".into();
                    return vec![name, "-".into(), access, none.clone(), none, adopt];
                };
                let pii: Vec<&str> = e.columns.iter().filter(|c| c.pii).map(|c| c.name.as_str()).collect();
                let (owner, tags, about) = (e.owner_team.clone(), e.tags.join(","), e.description.clone());
                vec![name, owner, access, tags, pii.join(","), about.unwrap_or_default()]
            })
            .collect();
        output::table(
            &["TABLE", "OWNER", "ACCESS", "TAGS", "PII COLUMNS", "DESCRIPTION"],
            &rows,
        );
    })
}

pub async fn show(global: &Global, table: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    print(global, &ws.show(&caller, table).await?, |card| print_card(table, card))
}

/// A table's card: its catalog entry and columns, schema history, last ten versions, grants
/// and lineage.
fn print_card(table: &str, card: &TableCard) {
    println!("table {table}");
    match &card.catalog {
        Some(e) => {
            let tags = if e.tags.is_empty() {
                "-".into()
            } else {
                e.tags.join(", ")
            };
            let latest = card.versions.first().map_or(0, |v| v.version);
            println!("  owner team:  {}", e.owner_team);
            println!("  description: {}", e.description.as_deref().unwrap_or("-"));
            println!("  tags:        {tags}");
            println!("  created:     {} by {}", output::time(&e.created_at), e.created_by);
            println!("  latest:      version {latest}\n");
            let rows: Vec<Vec<String>> = e.columns.iter().map(column_row).collect();
            output::table(&["COLUMN", "TYPE", "PII", "DESCRIPTION"], &rows);
        }
        None => println!("  not catalogued yet: write to it once (keel data ingest) to adopt it"),
    }
    if card.schema_history.len() > 1 {
        println!("\nschema history:");
        for s in &card.schema_history {
            let field = |c: &serde_json::Value, key: &str| c[key].as_str().unwrap_or("?").to_owned();
            let columns = s.schema.as_array().map(Vec::as_slice).unwrap_or_default();
            let columns: Vec<String> = columns
                .iter()
                .map(|c| format!("{}:{}", field(c, "name"), field(c, "type")))
                .collect();
            println!("  from v{}: {}", s.version, columns.join(", "));
        }
    }
    println!("\nversions:");
    for v in card.versions.iter().take(10) {
        let (at, op) = (
            v.timestamp.map(|t| output::time(&t)).unwrap_or_default(),
            v.operation.as_deref(),
        );
        let added = v.rows_added.map_or(String::new(), |n| format!("+{n} rows"));
        println!("  v{:<4} {at}  {}  {added}", v.version, op.unwrap_or_default());
    }
    if !card.grants.is_empty() {
        println!("\ngrants:");
    }
    for g in &card.grants {
        println!("  {} {} (by {})", g.team, g.permission, g.granted_by);
    }
    print_lineage(&card.lineage);
}

/// A catalogued column as a card row: name, type, PII mark and description.
fn column_row(c: &CatalogColumn) -> Vec<String> {
    let (kind, source) = (c.pii_kind.as_deref().unwrap_or("?"), c.pii_source.as_deref());
    let pii = match (c.pii, source) {
        (true, _) => format!("PII {kind} ({})", source.unwrap_or("?")),
        (false, Some("manual")) => "not PII (manual)".into(),
        (false, _) => String::new(),
    };
    let (name, ty, about) = (c.name.clone(), c.data_type.clone(), c.description.clone());
    vec![name, ty, pii, about.unwrap_or_default()]
}

/// The upstream and downstream edges of a card or `keel data lineage`, each under its heading.
fn print_lineage(lineage: &Lineage) {
    for (heading, edges) in [("upstream", &lineage.upstream), ("downstream", &lineage.downstream)] {
        if !edges.is_empty() {
            println!("\n{heading}:");
        }
        for e in edges {
            println!("  {} --{}--> {}", e.source, e.relation, e.target);
        }
    }
}

pub async fn search(global: &Global, text: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    print(global, &ws.search(&caller, text).await?, |hits| {
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                let (owner, about) = (
                    h.owner_team.clone().unwrap_or_else(|| "-".into()),
                    h.description.clone(),
                );
                vec![h.table.clone(), owner, h.matched.join(", "), about.unwrap_or_default()]
            })
            .collect();
        output::table(&["TABLE", "OWNER", "MATCHED", "DESCRIPTION"], &rows);
    })
}

pub async fn describe(global: &Global, args: DescribeArgs) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let edit = Describe {
        table: args.table,
        description: args.description,
        tags: args.tags,
        untags: args.untags,
        column: args.column,
        column_description: args.column_description,
        pii: args.pii,
        not_pii: args.not_pii,
    };
    let (entry, changed) = ws.describe(&caller, &edit).await?;
    print(global, &entry, |_| {
        println!("table {} updated ({})", edit.table, changed.join(", "))
    })
}

pub async fn lineage(global: &Global, node: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let lineage = ws.lineage(&caller, node).await?;
    let json = json!({ "node": node, "upstream": lineage.upstream, "downstream": lineage.downstream });
    print(global, &json, |_| {
        match lineage.upstream.is_empty() && lineage.downstream.is_empty() {
            true => println!("no lineage recorded for {node}"),
            false => {
                println!("{node}");
                print_lineage(&lineage);
            }
        }
    })
}
