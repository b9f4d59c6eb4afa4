//! Data commands that go through the catalog: every read and write of a table is checked
//! against the actor's grants and recorded in the audit log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use keel_catalog::{Actor, Catalog, Permission, Via, pii};
use keel_lake::{IngestOptions, Lake, WriteMode};
use keel_store::{ColumnEdit, TableEntry};
use serde_json::json;

use crate::cli::{DescribeArgs, Global, IngestArgs};
use crate::context::{Context, principal};
use crate::output;

/// Rows sampled after a write to look for personal data.
const PII_SAMPLE_ROWS: usize = 1000;

/// The catalog, the acting principal, and the table's entry once `needed` is checked.
pub async fn open_for(
    global: &Global,
    table: &str,
    needed: Permission,
    action: &str,
) -> anyhow::Result<(Catalog, Actor, Option<TableEntry>)> {
    open_for_with(global, table, needed, action, json!({})).await
}

/// As [`open_for`], with details for the audit record.
pub async fn open_for_with(
    global: &Global,
    table: &str,
    needed: Permission,
    action: &str,
    details: serde_json::Value,
) -> anyhow::Result<(Catalog, Actor, Option<TableEntry>)> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let entry = catalog
        .authorize(&actor, table, needed, action, Via::Cli, details)
        .await?;
    Ok((catalog, actor, entry))
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

pub async fn ingest(global: &Global, lake: &Lake, args: IngestArgs) -> anyhow::Result<()> {
    keel_lake::validate_table_name(&args.table)?;
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let table = args.table.clone();
    let details = json!({ "file": args.file.display().to_string(), "overwrite": args.overwrite });
    // A table already in the catalog needs a write grant; a new one an owner team the actor is in.
    let owner = match catalog.store().table_entry(&table).await? {
        Some(entry) => {
            catalog
                .authorize(&actor, &table, Permission::Write, "write", Via::Cli, details.clone())
                .await?;
            entry.owner_team
        }
        None if lake.exists(&table).await? => {
            // In the lake but not catalogued (written before the catalog, or a crash between the
            // commit and the catalog update): admins adopt it.
            catalog
                .authorize(&actor, &table, Permission::Write, "write", Via::Cli, details.clone())
                .await?;
            catalog
                .owner_for_new_table(&actor, &table, args.owner.as_deref())
                .await?
        }
        None => {
            catalog
                .owner_for_new_table(&actor, &table, args.owner.as_deref())
                .await?
        }
    };
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
    let options = IngestOptions {
        format: args.format.as_deref().map(str::parse).transpose()?,
        schema: args.schema.clone(),
        mode: if args.overwrite {
            WriteMode::Overwrite
        } else {
            WriteMode::Append
        },
        partition_by: args.partition_by.clone(),
        rows_read: Some(counter),
        ..IngestOptions::default()
    };
    let result = lake.ingest(&table, &args.file, &options).await;
    ticker.abort();
    bar.finish_and_clear();
    let report = result.with_context(|| format!("ingest into {table} failed; the table is unchanged"))?;

    // The data is committed: bring the catalog in step (columns, schema history, PII, lineage).
    let columns = lake.columns(&table).await?;
    let sample = lake
        .head(
            &table,
            Some(keel_lake::VersionOrTimestamp::Version(report.version)),
            PII_SAMPLE_ROWS,
        )
        .await?;
    let detected = pii::detect(&sample);
    let details = json!({
        "file": args.file.display().to_string(), "rows": report.rows, "version": report.version,
        "overwrite": args.overwrite,
    });
    catalog
        .record_write(
            &actor,
            &table,
            &owner,
            report.version as i64,
            &columns,
            &detected,
            Via::Cli,
            details,
        )
        .await?;
    if let Some(d) = &args.description
        && report.version == 0
    {
        catalog
            .store()
            .set_table_description(&table, Some(d), &actor.name)
            .await?;
    }
    for source in &args.derived_from {
        catalog
            .store()
            .add_lineage(
                source,
                &format!("table/{table}@v{}", report.version),
                "derived_from",
                &actor.name,
            )
            .await?;
    }
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
    for d in &detected {
        println!(
            "  PII: column {} looks like {} (by its {}); review with `keel data describe {table} --column {} --not-pii` if wrong",
            d.column, d.kind, d.by, d.column
        );
    }
    Ok(())
}

pub async fn sql(global: &Global, lake: &Lake, query: &str) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let tables = lake.referenced_tables(query)?;
    for table in &tables {
        catalog
            .authorize(
                &actor,
                table,
                Permission::Read,
                "query",
                Via::Cli,
                json!({ "sql": query }),
            )
            .await?;
    }
    let (bar, _) = row_progress(global, "running query");
    let result = lake.sql_on(query, &tables).await;
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

pub async fn ls(global: &Global, lake: &Lake, tag: Option<&str>) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let mut listed = catalog.visible_tables(&actor, &lake.tables().await?).await?;
    if let Some(tag) = tag {
        listed.retain(|l| l.entry.as_ref().is_some_and(|e| e.tags.iter().any(|t| t == tag)));
    }
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

pub async fn show(global: &Global, lake: &Lake, table: &str) -> anyhow::Result<()> {
    let (catalog, _actor, entry) = open_for(global, table, Permission::Read, "read_catalog").await?;
    let store = catalog.store();
    let history = lake.history(table).await?;
    let schemas = store.schema_history(table).await?;
    let grants = store.grants_on(table).await?;
    let (upstream, downstream) = store.lineage(&format!("table/{table}")).await?;
    if global.json {
        return output::json(&json!({
            "table": table,
            "catalog": entry,
            "versions": history.iter().map(|v| json!({
                "version": v.version, "timestamp": v.timestamp.map(|t| t.to_rfc3339()),
                "operation": v.operation, "rows_added": v.rows_added,
            })).collect::<Vec<_>>(),
            "schema_history": schemas,
            "grants": grants,
            "lineage": { "upstream": upstream, "downstream": downstream },
        }));
    }
    println!("table {table}");
    match &entry {
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
        for s in &schemas {
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
    if !grants.is_empty() {
        println!("\ngrants:");
        for g in &grants {
            println!("  {} {} (by {})", g.team, g.permission, g.granted_by);
        }
    }
    print_lineage(&upstream, &downstream);
    Ok(())
}

fn print_lineage(upstream: &[keel_store::LineageEdge], downstream: &[keel_store::LineageEdge]) {
    if !upstream.is_empty() {
        println!("\nupstream:");
        for e in upstream {
            println!("  {} --{}--> {}", e.source, e.relation, e.target);
        }
    }
    if !downstream.is_empty() {
        println!("\ndownstream:");
        for e in downstream {
            println!("  {} --{}--> {}", e.source, e.relation, e.target);
        }
    }
}

pub async fn search(global: &Global, lake: &Lake, text: &str) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let needle = text.to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&needle);
    let mut hits = Vec::new();
    for listed in catalog.visible_tables(&actor, &lake.tables().await?).await? {
        let mut why = Vec::new();
        if has(&listed.name) {
            why.push("name".to_string());
        }
        if let Some(e) = &listed.entry {
            if e.description.as_deref().is_some_and(has) {
                why.push("description".into());
            }
            for t in e.tags.iter().filter(|t| has(t)) {
                why.push(format!("tag {t}"));
            }
            for c in &e.columns {
                if has(&c.name) || c.description.as_deref().is_some_and(has) {
                    why.push(format!("column {}", c.name));
                }
            }
        }
        if !why.is_empty() {
            hits.push(json!({
                "table": listed.name,
                "owner_team": listed.entry.as_ref().map(|e| e.owner_team.clone()),
                "description": listed.entry.as_ref().and_then(|e| e.description.clone()),
                "matched": why,
            }));
        }
    }
    if global.json {
        return output::json(&hits);
    }
    let rows: Vec<Vec<String>> = hits
        .iter()
        .map(|h| {
            vec![
                h["table"].as_str().unwrap_or_default().to_owned(),
                h["owner_team"].as_str().unwrap_or("-").to_owned(),
                h["matched"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m.as_str()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
                h["description"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    output::table(&["TABLE", "OWNER", "MATCHED", "DESCRIPTION"], &rows);
    Ok(())
}

pub async fn describe(global: &Global, args: DescribeArgs) -> anyhow::Result<()> {
    let details = json!({
        "description": args.description, "tags": args.tags, "untags": args.untags,
        "column": args.column, "pii": args.pii, "not_pii": args.not_pii,
    });
    let (catalog, actor, entry) =
        open_for_with(global, &args.table, Permission::Write, "write_catalog", details).await?;
    if entry.is_none() {
        anyhow::bail!(
            "table {:?} is not catalogued yet: write to it once (keel data ingest) before describing it",
            args.table
        );
    }
    let store = catalog.store();
    let mut changed = Vec::new();
    if let Some(d) = &args.description {
        store
            .set_table_description(&args.table, Some(d.as_str()).filter(|d| !d.is_empty()), &actor.name)
            .await?;
        changed.push("description");
    }
    if !args.tags.is_empty() || !args.untags.is_empty() {
        let clean = |tags: &[String]| -> Vec<String> { tags.iter().map(|t| t.trim().to_lowercase()).collect() };
        store
            .tag_table(&args.table, &clean(&args.tags), &clean(&args.untags), &actor.name)
            .await?;
        changed.push("tags");
    }
    if let Some(column) = &args.column {
        let edit = ColumnEdit {
            description: args.column_description.clone(),
            pii: if args.not_pii {
                Some((false, None))
            } else {
                args.pii.clone().map(|k| (true, Some(k)))
            },
        };
        if edit == ColumnEdit::default() {
            anyhow::bail!("--column {column} needs --column-description, --pii KIND or --not-pii");
        }
        store.edit_column(&args.table, column, &edit, &actor.name).await?;
        changed.push("column");
    }
    if changed.is_empty() {
        anyhow::bail!("nothing to change: pass --description, --tag, --untag or --column with an edit");
    }
    if global.json {
        return output::json(&store.table_entry(&args.table).await?);
    }
    println!("table {} updated ({})", args.table, changed.join(", "));
    Ok(())
}

pub async fn lineage(global: &Global, node: &str) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    // Lineage of a table is part of the table: it needs a read grant like its rows.
    if let Some(table) = node.strip_prefix("table/") {
        let table = table.split('@').next().unwrap_or(table);
        catalog
            .authorize(&actor, table, Permission::Read, "read_lineage", Via::Cli, json!({}))
            .await?;
    }
    let (upstream, downstream) = catalog.store().lineage(node).await?;
    if global.json {
        return output::json(&json!({ "node": node, "upstream": upstream, "downstream": downstream }));
    }
    if upstream.is_empty() && downstream.is_empty() {
        println!("no lineage recorded for {node}");
        return Ok(());
    }
    println!("{node}");
    print_lineage(&upstream, &downstream);
    Ok(())
}
