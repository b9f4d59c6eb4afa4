//! Data commands that go through keel-data: every read and write of a table is checked against
//! the actor's grants and recorded in the audit log there; this file parses flags and prints.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_data::{Caller, Describe, Ingest, Version, Workspace};
use serde_json::json;

use crate::cli::{DescribeArgs, Global, IngestArgs};
use crate::context::{Context, principal};
use crate::output;

/// The data workspace the global options point at, and the principal acting on it.
pub async fn open(global: &Global) -> anyhow::Result<(Workspace, Caller)> {
    let ctx = Context::open(global).await?;
    let ws = Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&principal(global)).await?;
    Ok((ws, caller))
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
        file: args.file.clone(),
        format: args.format.as_deref().map(str::parse).transpose()?,
        schema: args.schema.clone(),
        overwrite: args.overwrite,
        partition_by: args.partition_by.clone(),
        owner: args.owner.clone(),
        description: args.description.clone(),
        derived_from: args.derived_from.clone(),
        rows_read: Some(counter),
    };
    let result = ws.ingest(&caller, &request).await;
    ticker.abort();
    bar.finish_and_clear();
    let done = result?;
    let (report, owner, detected) = (&done.report, &done.owner, &done.detected);
    if global.json {
        return output::json(&json!({
            "table": report.table, "rows": report.rows, "bytes": report.bytes, "version": report.version,
            "seconds": report.seconds, "owner_team": owner,
            "pii_detected": detected.iter().map(|d| json!({"column": d.column, "kind": d.kind, "by": d.by})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "{}: {} rows, {} bytes -> version {} in {:.2} s ({:.0} rows/s); owner team {owner}",
        report.table,
        report.rows,
        report.bytes,
        report.version,
        report.seconds,
        report.rows as f64 / report.seconds.max(1e-9)
    );
    for d in detected {
        println!(
            "  PII: column {} looks like {} (by its {}); review with `keel data describe {table} --column {} --not-pii` if wrong",
            d.column, d.kind, d.by, d.column
        );
    }
    Ok(())
}

pub async fn sql(global: &Global, query: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let (bar, _) = row_progress(global, "running query");
    let result = ws.sql(&caller, query).await;
    bar.finish_and_clear();
    let batches = result?;
    if global.json {
        return output::json(&rows_as_json(&batches)?);
    }
    println!("{}", keel_lake::pretty(&batches)?);
    Ok(())
}

/// Record batches as a JSON array of row objects.
pub fn rows_as_json(batches: &[keel_lake::arrow::array::RecordBatch]) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&keel_lake::json_rows(batches)?)?)
}

/// Prints a table's versions (newest first).
pub fn print_versions(global: &Global, history: &[Version]) -> anyhow::Result<()> {
    if global.json {
        return output::json(&history);
    }
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.timestamp.map(|t| t.to_rfc3339()).unwrap_or_default(),
                v.operation.clone().unwrap_or_default(),
                v.rows_added.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    output::table(&["VERSION", "TIMESTAMP", "OPERATION", "ROWS ADDED"], &rows);
    Ok(())
}

pub async fn ls(global: &Global, tag: Option<&str>) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let listed = ws.list(&caller, tag).await?;
    if global.json {
        return output::json(&listed);
    }
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|l| match &l.entry {
            Some(e) => vec![
                l.name.clone(),
                e.owner_team.clone(),
                l.permission.to_string(),
                e.tags.join(","),
                e.columns
                    .iter()
                    .filter(|c| c.pii)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                e.description.clone().unwrap_or_default(),
            ],
            None => vec![
                l.name.clone(),
                "-".into(),
                l.permission.to_string(),
                String::new(),
                String::new(),
                "(not catalogued: write to it once to adopt it)".into(),
            ],
        })
        .collect();
    output::table(
        &["TABLE", "OWNER", "ACCESS", "TAGS", "PII COLUMNS", "DESCRIPTION"],
        &rows,
    );
    Ok(())
}

pub async fn show(global: &Global, table: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let card = ws.show(&caller, table).await?;
    if global.json {
        return output::json(&card);
    }
    let (history, schemas) = (&card.versions, &card.schema_history);
    println!("table {table}");
    match &card.catalog {
        Some(e) => {
            println!("  owner team:  {}", e.owner_team);
            println!("  description: {}", e.description.as_deref().unwrap_or("-"));
            println!(
                "  tags:        {}",
                if e.tags.is_empty() {
                    "-".into()
                } else {
                    e.tags.join(", ")
                }
            );
            println!("  created:     {} by {}", output::time(&e.created_at), e.created_by);
            println!("  latest:      version {}", history.first().map_or(0, |v| v.version));
            println!();
            let rows: Vec<Vec<String>> = e
                .columns
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.data_type.clone(),
                        if c.pii {
                            format!(
                                "PII {} ({})",
                                c.pii_kind.as_deref().unwrap_or("?"),
                                c.pii_source.as_deref().unwrap_or("?")
                            )
                        } else if c.pii_source.as_deref() == Some("manual") {
                            "not PII (manual)".into()
                        } else {
                            String::new()
                        },
                        c.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["COLUMN", "TYPE", "PII", "DESCRIPTION"], &rows);
        }
        None => println!("  not catalogued yet: write to it once (keel data ingest) to adopt it"),
    }
    if schemas.len() > 1 {
        println!("\nschema history:");
        for s in schemas {
            let cols: Vec<String> = s
                .schema
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            format!(
                                "{}:{}",
                                c["name"].as_str().unwrap_or("?"),
                                c["type"].as_str().unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("  from v{}: {}", s.version, cols.join(", "));
        }
    }
    println!("\nversions:");
    for v in history.iter().take(10) {
        println!(
            "  v{:<4} {}  {}  {}",
            v.version,
            v.timestamp.map(|t| output::time(&t)).unwrap_or_default(),
            v.operation.clone().unwrap_or_default(),
            v.rows_added.map_or(String::new(), |n| format!("+{n} rows"))
        );
    }
    if !card.grants.is_empty() {
        println!("\ngrants:");
        for g in &card.grants {
            println!("  {} {} (by {})", g.team, g.permission, g.granted_by);
        }
    }
    print_lineage(&card.lineage);
    Ok(())
}

fn print_lineage(lineage: &keel_data::Lineage) {
    if !lineage.upstream.is_empty() {
        println!("\nupstream:");
        for e in &lineage.upstream {
            println!("  {} --{}--> {}", e.source, e.relation, e.target);
        }
    }
    if !lineage.downstream.is_empty() {
        println!("\ndownstream:");
        for e in &lineage.downstream {
            println!("  {} --{}--> {}", e.source, e.relation, e.target);
        }
    }
}

pub async fn search(global: &Global, text: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let hits = ws.search(&caller, text).await?;
    if global.json {
        return output::json(&hits);
    }
    let rows: Vec<Vec<String>> = hits
        .iter()
        .map(|h| {
            vec![
                h.table.clone(),
                h.owner_team.clone().unwrap_or_else(|| "-".into()),
                h.matched.join(", "),
                h.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["TABLE", "OWNER", "MATCHED", "DESCRIPTION"], &rows);
    Ok(())
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
    if global.json {
        return output::json(&entry);
    }
    println!("table {} updated ({})", edit.table, changed.join(", "));
    Ok(())
}

pub async fn lineage(global: &Global, node: &str) -> anyhow::Result<()> {
    let (ws, caller) = open(global).await?;
    let lineage = ws.lineage(&caller, node).await?;
    if global.json {
        return output::json(&json!({ "node": node, "upstream": lineage.upstream, "downstream": lineage.downstream }));
    }
    if lineage.upstream.is_empty() && lineage.downstream.is_empty() {
        println!("no lineage recorded for {node}");
        return Ok(());
    }
    println!("{node}");
    print_lineage(&lineage);
    Ok(())
}
