//! `keel data ...`

use anyhow::Context as _;
#[cfg(feature = "lake")]
use keel_lake::VersionOrTimestamp;

use crate::cli::{AssessArgs, DataCommand, Global};
use crate::output;

#[cfg(feature = "lake")]
pub(crate) mod catalogued;
#[cfg(feature = "lake")]
mod export;

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
            return catalogued::print(global, &report, |r| {
                let (version, deleted) = (r.version, format!("{} data file(s) deleted", r.files_vacuumed));
                let (removed, added, partitions) = (r.files_removed, r.files_added, r.partitions);
                match r.changed {
                    true => println!(
                        "{table}: version {version}: {removed} files compacted into {added} in {partitions} partition(s); {deleted}"
                    ),
                    false => println!("{table}: nothing to compact (version {version}); {deleted}"),
                }
            });
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
            catalogued::print_rows(global, &ws.head(&caller, &table, point, limit).await?)?;
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
        DataCommand::Adopt { table, owner } => {
            let (ws, caller) = catalogued::open(global).await?;
            let entry = ws.adopt(&caller, &table, &owner).await?;
            return catalogued::print(global, &entry, |e| {
                println!(
                    "table {table} is in the catalog now, owned by team {}; share it with `keel access grant {table} TEAM read`",
                    e.owner_team
                )
            });
        }
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
            print_drift(global, &drift(global, &args.reference, &args.current, options).await?)?;
        }
        DataCommand::Assess(args) => assess(global, args).await?,
        #[cfg(feature = "lake")]
        DataCommand::Export(args) => return export::run(global, args).await,
    }
    Ok(())
}

/// `keel data drift`: the workspace is opened only when a side names a table.
#[cfg(feature = "lake")]
async fn drift(
    global: &Global,
    reference: &str,
    current: &str,
    options: keel_monitor::DriftOptions,
) -> anyhow::Result<keel_monitor::DriftReport> {
    use keel_data::DriftInput;
    Ok(match (DriftInput::parse(reference), DriftInput::parse(current)) {
        (DriftInput::File(r), DriftInput::File(c)) => keel_data::drift_files(r, c, options).await?,
        (r, c) => {
            let (ws, caller) = catalogued::open(global).await?;
            ws.drift(&caller, &r, &c, options).await?
        }
    })
}

#[cfg(not(feature = "lake"))]
async fn drift(
    _: &Global,
    reference: &str,
    current: &str,
    options: keel_monitor::DriftOptions,
) -> anyhow::Result<keel_monitor::DriftReport> {
    let (r, c) = (reference.to_owned(), current.to_owned());
    Ok(tokio::task::spawn_blocking(move || keel_monitor::drift_files(r.as_ref(), c.as_ref(), &options)).await??)
}

/// `keel data assess`: assesses TABLE (a lake table or a Parquet file), prints and writes the report.
async fn assess(global: &Global, args: AssessArgs) -> anyhow::Result<()> {
    let mut options = keel_assess::AssessOptions::new(&args.target);
    options.time = args.time.clone();
    options.entity = args.entity.clone();
    if let Some(now) = args.now {
        options.now = now;
    }
    options.baseline = !args.no_baseline;
    options.max_rows = args.max_rows;
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
    let report = assessment(global, &args, options).await;
    spinner.finish_and_clear();
    let report = report?;
    write_report(args.markdown.as_deref(), || report.to_markdown())?;
    write_report(args.html.as_deref(), || report.to_html())?;
    if global.json {
        return output::json(&report);
    }
    print!("{}", report.to_terminal());
    Ok(())
}

/// Writes a rendering of the report to `file`, when one was asked for.
fn write_report(file: Option<&std::path::Path>, render: impl FnOnce() -> String) -> anyhow::Result<()> {
    if let Some(file) = file {
        std::fs::write(file, render()).with_context(|| format!("cannot write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    Ok(())
}

/// The assessment of a Parquet file as it is, or of a lake table (the workspace is opened then).
#[cfg(feature = "lake")]
async fn assessment(
    global: &Global,
    args: &AssessArgs,
    options: keel_assess::AssessOptions,
) -> anyhow::Result<keel_assess::Assessment> {
    Ok(match keel_data::parquet_file(&args.table, args.version)? {
        Some(file) => {
            keel_data::assess_files(keel_lake::TableFiles::from_paths(vec![file]), &args.table, options).await?
        }
        None => {
            let (ws, caller) = catalogued::open(global).await?;
            ws.assess(&caller, &args.table, args.version, options).await?
        }
    })
}

#[cfg(not(feature = "lake"))]
async fn assessment(
    _: &Global,
    args: &AssessArgs,
    mut options: keel_assess::AssessOptions,
) -> anyhow::Result<keel_assess::Assessment> {
    let file = std::path::PathBuf::from(&args.table);
    if !file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
    {
        anyhow::bail!(
            "{} is not a .parquet file, and this keel was built without lake tables (feature `lake`)",
            args.table
        )
    }
    options.title = Some(args.table.clone());
    let report = tokio::task::spawn_blocking(move || keel_assess::assess(&[file], &options)).await?;
    report.with_context(|| format!("cannot assess {}", args.table))
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
