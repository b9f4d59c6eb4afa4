//! `keel data ...`

use anyhow::Context as _;
#[cfg(feature = "lake")]
use keel_lake::VersionOrTimestamp;

use crate::cli::{AssessArgs, DataCommand, Global};
use crate::output;

#[cfg(feature = "lake")]
mod catalogued;

pub async fn run(global: &Global, cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        #[cfg(feature = "lake")]
        DataCommand::Ingest(args) => return catalogued::ingest(global, args).await,
        #[cfg(feature = "lake")]
        DataCommand::Sql { query } => return catalogued::sql(global, &query).await,
        #[cfg(feature = "lake")]
        DataCommand::Versions { table } => {
            let (ws, caller) = catalogued::open(global).await?;
            return catalogued::print_versions(global, &ws.history(&caller, &table).await?);
        }
        #[cfg(feature = "lake")]
        DataCommand::Compact {
            table,
            target_mb,
            keep_hours,
        } => {
            if target_mb == 0 {
                anyhow::bail!("--target-mb must be at least 1");
            }
            let (ws, caller) = catalogued::open(global).await?;
            let report = ws
                .compact(&caller, &table, Some(target_mb.saturating_mul(1 << 20)), keep_hours)
                .await?;
            if global.json {
                return output::json(&report);
            }
            if report.changed {
                println!(
                    "{table}: version {}: {} files compacted into {} in {} partition(s); {} data file(s) deleted",
                    report.version, report.files_removed, report.files_added, report.partitions, report.files_vacuumed
                );
            } else {
                println!(
                    "{table}: nothing to compact (version {}); {} data file(s) deleted",
                    report.version, report.files_vacuumed
                );
            }
        }
        #[cfg(feature = "lake")]
        DataCommand::Head {
            table,
            version,
            at,
            limit,
        } => {
            let point = version
                .map(VersionOrTimestamp::Version)
                .or(at.map(VersionOrTimestamp::Timestamp));
            let (ws, caller) = catalogued::open(global).await?;
            let batches = ws.head(&caller, &table, point, limit).await?;
            if global.json {
                return output::json(&catalogued::rows_as_json(&batches)?);
            }
            println!("{}", keel_lake::pretty(&batches)?);
        }
        #[cfg(feature = "lake")]
        DataCommand::Ls { tag } => return catalogued::ls(global, tag.as_deref()).await,
        #[cfg(feature = "lake")]
        DataCommand::Show { table } => return catalogued::show(global, &table).await,
        #[cfg(feature = "lake")]
        DataCommand::Search { text } => return catalogued::search(global, &text).await,
        #[cfg(feature = "lake")]
        DataCommand::Describe(args) => return catalogued::describe(global, args).await,
        #[cfg(feature = "lake")]
        DataCommand::Lineage { node } => return catalogued::lineage(global, &node).await,
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
            let scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
            let reference = drift_input(global, &args.reference, scratch.path(), "reference").await?;
            let current = drift_input(global, &args.current, scratch.path(), "current").await?;
            let report = tokio::task::spawn_blocking(move || keel_monitor::drift_files(&reference, &current, &options))
                .await
                .context("the drift task failed")??;
            print_drift(global, &report)?;
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
                "{} is not a Parquet file: ingest it into a lake table first (keel data ingest {} --table NAME) \
                 and assess the table",
                args.table,
                args.table
            );
        }
        if args.version.is_some() {
            anyhow::bail!("--version applies to lake tables, not to a Parquet file");
        }
        local_files(vec![path.to_path_buf()])
    } else {
        let details = serde_json::json!({ "target": args.target, "version": args.version });
        table_files(global, &args.table, args.version, details).await?
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
    let spinner = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner().with_message(format!("assessing {}", args.table))
    };
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let result = tokio::task::spawn_blocking(move || keel_assess::assess(&files, &options)).await;
    spinner.finish_and_clear();
    let report = result
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

/// Local Parquet files to read: lake table files (copies, kept while the value lives, for a
/// lake in a bucket) or files given on the command line.
#[cfg(feature = "lake")]
type Files = keel_lake::TableFiles;
#[cfg(not(feature = "lake"))]
type Files = Vec<std::path::PathBuf>;

#[cfg(feature = "lake")]
fn local_files(paths: Vec<std::path::PathBuf>) -> Files {
    keel_lake::TableFiles::from_paths(paths)
}

#[cfg(not(feature = "lake"))]
fn local_files(paths: Vec<std::path::PathBuf>) -> Files {
    paths
}

/// The data files of a lake table version, as local files, after a read check (audited as
/// `assess` with `details`).
#[cfg(feature = "lake")]
async fn table_files(
    global: &Global,
    table: &str,
    version: Option<u64>,
    details: serde_json::Value,
) -> anyhow::Result<Files> {
    let (ws, caller) = catalogued::open(global).await?;
    let pass = ws.check::<keel_data::Read>(&caller, table, "assess", details).await?;
    Ok(ws.files(&pass, version).await?)
}

#[cfg(not(feature = "lake"))]
async fn table_files(_: &Global, table: &str, _: Option<u64>, _: serde_json::Value) -> anyhow::Result<Files> {
    anyhow::bail!("{table} is not a .parquet file, and this keel was built without lake tables (feature `lake`)")
}

/// One side of `keel data drift`: a Parquet file as it is, or a lake table (`TABLE` or
/// `TABLE@vN`) read (after an access check) into one Parquet file in `scratch`.
async fn drift_input(
    global: &Global,
    arg: &str,
    scratch: &std::path::Path,
    side: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = std::path::Path::new(arg);
    let (table, version) = match arg.rsplit_once("@v") {
        Some((t, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => (t, v.parse::<u64>().ok()),
        _ => (arg, None),
    };
    let looks_like_file = path.is_file()
        || arg.contains(std::path::MAIN_SEPARATOR)
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"));
    #[cfg(feature = "lake")]
    if !looks_like_file && keel_lake::validate_table_name(table).is_ok() {
        let details = serde_json::json!({ "side": side, "version": version });
        let (ws, caller) = catalogued::open(global).await?;
        let pass = ws.check::<keel_data::Read>(&caller, table, "drift", details).await?;
        let batches = ws.scan(&pass, version.map(VersionOrTimestamp::Version)).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            anyhow::bail!("the {side} table {arg} has no rows: nothing to compare");
        }
        let file = scratch.join(format!("{side}.parquet"));
        write_parquet(&file, &batches)?;
        return Ok(file);
    }
    #[cfg(not(feature = "lake"))]
    let _ = (global, scratch, side, table, version, looks_like_file);
    Ok(path.to_path_buf())
}

/// Writes record batches to one Parquet file.
#[cfg(feature = "lake")]
pub(crate) fn write_parquet(
    path: &std::path::Path,
    batches: &[keel_lake::arrow::array::RecordBatch],
) -> anyhow::Result<()> {
    let Some(first) = batches.first() else {
        anyhow::bail!("nothing to write to {}", path.display());
    };
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut writer = keel_lake::parquet::arrow::ArrowWriter::try_new(file, first.schema(), None)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(())
}

/// Prints a drift report as a table (or JSON with `--json`).
pub(crate) fn print_drift(global: &Global, report: &keel_monitor::DriftReport) -> anyhow::Result<()> {
    if global.json {
        return output::json(report);
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
    Ok(())
}
