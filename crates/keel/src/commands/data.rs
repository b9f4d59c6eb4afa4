//! `keel data ...`

use anyhow::Context as _;
#[cfg(feature = "lake")]
use keel_lake::{IngestOptions, Lake, VersionOrTimestamp, WriteMode};

use crate::cli::{AssessArgs, DataCommand, Global};
use crate::output;

pub async fn run(global: &Global, cmd: DataCommand) -> anyhow::Result<()> {
    #[cfg(feature = "lake")]
    let lake = || -> anyhow::Result<Lake> { Ok(Lake::open(&global.home.join("lake"))?) };
    match cmd {
        #[cfg(feature = "lake")]
        DataCommand::Ingest {
            table,
            file,
            format,
            schema,
            overwrite,
            partition_by,
        } => {
            let options = IngestOptions {
                format: format.as_deref().map(str::parse).transpose()?,
                schema,
                mode: if overwrite {
                    WriteMode::Overwrite
                } else {
                    WriteMode::Append
                },
                partition_by,
                ..IngestOptions::default()
            };
            let r = lake()?
                .ingest(&table, &file, &options)
                .await
                .with_context(|| format!("ingest into {table} failed"))?;
            if global.json {
                return output::json(&serde_json::json!({
                    "table": r.table, "rows": r.rows, "bytes": r.bytes, "version": r.version, "seconds": r.seconds,
                }));
            }
            println!(
                "{}: {} rows, {} bytes -> version {} in {:.2} s ({:.0} rows/s)",
                r.table,
                r.rows,
                r.bytes,
                r.version,
                r.seconds,
                r.rows as f64 / r.seconds.max(1e-9)
            );
        }
        #[cfg(feature = "lake")]
        DataCommand::Sql { query } => println!("{}", keel_lake::pretty(&lake()?.sql(&query).await?)?),
        #[cfg(feature = "lake")]
        DataCommand::Versions { table } => {
            let history = lake()?.history(&table).await?;
            if global.json {
                let rows: Vec<serde_json::Value> = history
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "version": v.version, "timestamp": v.timestamp.map(|t| t.to_rfc3339()),
                            "operation": v.operation, "rows_added": v.rows_added,
                        })
                    })
                    .collect();
                return output::json(&rows);
            }
            let rows: Vec<Vec<String>> = history
                .into_iter()
                .map(|v| {
                    vec![
                        v.version.to_string(),
                        v.timestamp.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        v.operation.unwrap_or_default(),
                        v.rows_added.map_or("-".into(), |n| n.to_string()),
                    ]
                })
                .collect();
            output::table(&["VERSION", "TIMESTAMP", "OPERATION", "ROWS ADDED"], &rows);
        }
        #[cfg(feature = "lake")]
        DataCommand::Show {
            table,
            version,
            at,
            limit,
        } => {
            let point = version
                .map(VersionOrTimestamp::Version)
                .or(at.map(VersionOrTimestamp::Timestamp));
            let batches = lake()?.scan(&table, point).await?;
            let mut shown = Vec::new();
            let mut left = limit;
            for b in batches {
                if left == 0 {
                    break;
                }
                let n = b.num_rows().min(left);
                shown.push(b.slice(0, n));
                left -= n;
            }
            println!("{}", keel_lake::pretty(&shown)?);
        }
        DataCommand::Drift(args) => {
            let method: keel_monitor::Method = args
                .method
                .parse()
                .map_err(|e| anyhow::anyhow!("--method {}: {e}", args.method))?;
            let options = keel_monitor::DriftOptions {
                method,
                threshold: args.threshold,
                columns: (!args.columns.is_empty()).then_some(args.columns),
                ..Default::default()
            };
            let (reference, current) = (args.reference.clone(), args.current.clone());
            let report = tokio::task::spawn_blocking(move || keel_monitor::drift_files(&reference, &current, &options))
                .await
                .context("the drift task failed")??;
            if global.json {
                return output::json(&report);
            }
            let rows: Vec<Vec<String>> = report
                .columns
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        format!("{:?}", c.kind),
                        format!("{:?}", c.method),
                        format!("{:.6}", c.score),
                        format!("{}", c.threshold),
                        if c.drifted { "DRIFT".into() } else { String::new() },
                    ]
                })
                .collect();
            output::table(&["COLUMN", "KIND", "METHOD", "SCORE", "THRESHOLD", "DRIFTED"], &rows);
            println!(
                "\ndataset drift: {} ({:.0}% of columns drifted; {} reference rows, {} current rows; {:.2} s)",
                if report.dataset_drift { "YES" } else { "no" },
                report.share_drifted * 100.0,
                report.reference_rows,
                report.current_rows,
                report.seconds
            );
        }
        DataCommand::Assess(args) => assess(global, args).await?,
    }
    Ok(())
}

/// `keel data assess`: resolves TABLE to Parquet files, assesses them, prints and writes the report.
async fn assess(global: &Global, args: AssessArgs) -> anyhow::Result<()> {
    let path = std::path::Path::new(&args.table);
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let files = if matches!(ext.as_str(), "parquet" | "pq") || path.is_file() {
        if !matches!(ext.as_str(), "parquet" | "pq") {
            anyhow::bail!(
                "{} is not a Parquet file: ingest it into a lake table first (keel data ingest TABLE {}) \
                 and assess the table",
                args.table,
                args.table
            );
        }
        if args.version.is_some() {
            anyhow::bail!("--version applies to lake tables, not to a Parquet file");
        }
        vec![path.to_path_buf()]
    } else {
        table_files(global, &args.table, args.version).await?
    };
    let mut options = keel_assess::AssessOptions::new(&args.target);
    options.time = args.time.clone();
    options.entity = args.entity.clone();
    if let Some(now) = args.now {
        options.now = now;
    }
    options.baseline = !args.no_baseline;
    options.max_rows = args.max_rows;
    options.title = Some(match args.version {
        Some(v) => format!("{} (version {v})", args.table),
        None => args.table.clone(),
    });
    options.thresholds.max_freshness_seconds = args.max_lag_hours * 3600.0;
    options.thresholds.leakage_auc = args.leakage_auc;
    options.thresholds.min_rows = args.min_rows;
    options.thresholds.min_positives = args.min_positives;
    let report = tokio::task::spawn_blocking(move || keel_assess::assess(&files, &options))
        .await
        .context("the assessment task failed")?
        .with_context(|| format!("cannot assess {}", args.table))?;
    if let Some(file) = &args.markdown {
        std::fs::write(file, report.to_markdown()).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    if let Some(file) = &args.html {
        std::fs::write(file, report.to_html()).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    if global.json {
        return output::json(&report);
    }
    print!("{}", report.to_terminal());
    Ok(())
}

#[cfg(feature = "lake")]
async fn table_files(global: &Global, table: &str, version: Option<u64>) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let lake = Lake::open(&global.home.join("lake"))?;
    Ok(lake.files(table, version.map(VersionOrTimestamp::Version)).await?)
}

#[cfg(not(feature = "lake"))]
async fn table_files(_: &Global, table: &str, _: Option<u64>) -> anyhow::Result<Vec<std::path::PathBuf>> {
    anyhow::bail!("{table} is not a .parquet file, and this keel was built without lake tables (feature `lake`)")
}
