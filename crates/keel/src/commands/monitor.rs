//! `keel monitor label`, `performance`, `retention` and `drift`: the log tables are checked for
//! the person on the command line (label and retention here; performance and drift inside their
//! library operations), then the answer is printed.

use anyhow::Context as _;
use keel_predlog::Sink as _;
use keel_predlog::performance::{PerformanceOptions, PerformanceReport};

use keel_data::{Caller, Workspace, Write};

use crate::cli::{Global, MonitorCommand};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: MonitorCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let lake = ctx.open_lake().await?;
    // Log tables are lake tables like any other: the same grants apply (uncatalogued ones are
    // for workspace admins), and every use is audited.
    let ws = Workspace::new(ctx.catalog(), lake.clone());
    let caller = ws.cli_caller(&principal(global)).await?;
    let check = async |table: &str, action: &str| -> anyhow::Result<()> {
        ws.check::<Write>(&caller, table, action, serde_json::json!({})).await?;
        Ok(())
    };
    match &cmd {
        MonitorCommand::Label { .. } => check(keel_predlog::record::LABELS_TABLE, "write").await?,
        MonitorCommand::Retention { .. } => {
            for table in lake.tables().await? {
                if keel_predlog::retention::is_log_table(&table) {
                    check(&table, "retention").await?;
                }
            }
        }
        // These check their tables inside the library operation.
        MonitorCommand::Performance { .. } | MonitorCommand::Drift(_) => {}
    }
    match cmd {
        MonitorCommand::Drift(args) => return drift(global, &ctx, &ws, &caller, args).await,
        MonitorCommand::Retention { days } => {
            let removed = keel_predlog::retention::apply(&lake, days, chrono::Utc::now()).await?;
            if global.json {
                return output::json(&removed);
            }
            if removed.is_empty() {
                println!("no prediction log tables in the lake");
            }
            for r in &removed {
                println!(
                    "{}: {} row(s) older than {days} day(s) deleted, {} file(s) removed",
                    r.table,
                    r.rows.map_or("?".to_string(), |n| n.to_string()),
                    r.files
                );
            }
        }
        MonitorCommand::Label { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let items = keel_predlog::parse_labels(&text).with_context(|| file.display().to_string())?;
            let records = keel_predlog::validate_labels(&items, keel_predlog::now_us())?;
            let sink = keel_predlog::lake_sink::LakeSink::new(lake.clone(), None);
            sink.write_labels(&records).await?;
            let tables = lake.tables().await?;
            let (unmatched, examples) = keel_predlog::performance::unmatched(&lake, &tables).await?;
            if global.json {
                return output::json(&serde_json::json!({
                    "stored": records.len(), "unmatched_labels": unmatched, "unmatched_examples": examples,
                }));
            }
            println!("stored {} label(s)", records.len());
            if unmatched > 0 {
                println!(
                    "{unmatched} label(s) in the lake match no logged prediction (yet), e.g. {}",
                    examples.join(", ")
                );
            }
        }
        MonitorCommand::Performance {
            model,
            since,
            bucket,
            score,
        } => {
            let options = PerformanceOptions {
                since,
                bucket: bucket.parse()?,
                score,
                ..PerformanceOptions::default()
            };
            let report = keel_experiments::offline::performance::of_model(&ws, &caller, &model, &options).await?;
            if global.json {
                return output::json(&report);
            }
            print_report(&report);
        }
    }
    Ok(())
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.4}"))
}

fn print_report(r: &PerformanceReport) {
    println!("model {} (table {}, score {})", r.model, r.table, r.score_column);
    let rows = |groups: &[keel_predlog::performance::Group]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                vec![
                    g.version.to_string(),
                    g.bucket.clone().unwrap_or_else(|| "all".into()),
                    g.predictions.to_string(),
                    g.labelled.to_string(),
                    num(g.positive_rate),
                    num(g.mean_score),
                    num(g.auc),
                    num(g.log_loss),
                    num(g.ece),
                ]
            })
            .collect()
    };
    let headers = [
        "version",
        "bucket",
        "predictions",
        "labelled",
        "positive_rate",
        "mean_score",
        "auc",
        "log_loss",
        "ece",
    ];
    output::table(&headers, &rows(&r.versions));
    println!();
    output::table(&headers, &rows(&r.buckets));
    if r.unmatched_labels > 0 {
        println!(
            "\n{} label(s) match no logged prediction, e.g. {}",
            r.unmatched_labels,
            r.unmatched_examples.join(", ")
        );
    }
}

/// `keel monitor drift DEPLOYMENT --reference TABLE`: `keel_experiments::offline::drift`'s
/// report (it authorises the reference and the deployment's prediction-log tables first).
async fn drift(
    global: &Global,
    ctx: &Context,
    ws: &Workspace,
    caller: &Caller,
    args: crate::cli::MonitorDriftArgs,
) -> anyhow::Result<()> {
    use keel_experiments::offline::drift::{DriftRequest, PredictionsBaseline, of_deployment};

    let method: keel_monitor::Method = args
        .method
        .parse()
        .map_err(|e| anyhow::anyhow!("--method {}: {e}", args.method))?;
    let request = DriftRequest {
        deployment: args.deployment.clone(),
        reference: args.reference.clone(),
        window_seconds: args.window_seconds,
        columns: args.columns.clone(),
        ignore: args.ignore.clone(),
        options: keel_monitor::DriftOptions {
            method,
            threshold: args.threshold,
            ..Default::default()
        },
    };
    let repository = keel_serving::ModelRepository::new(ctx.registry.clone(), keel_runtime::ModelOptions::default());
    let report = of_deployment(ws, caller, &repository, &request, keel_predlog::now_us()).await?;
    if global.json {
        return output::json(&serde_json::json!({
            "deployment": args.deployment, "reference": args.reference, "tables": report.tables,
            "window_seconds": args.window_seconds, "features": report.features, "predictions": report.predictions,
            "predictions_baseline": report.predictions_baseline.as_str(), "predictions_note": report.predictions_note,
        }));
    }
    println!(
        "inputs of {} (last {} s) against {}:",
        args.deployment, args.window_seconds, args.reference
    );
    super::data::print_drift(global, &report.features)?;
    let note = report.predictions_note.as_deref().unwrap_or("");
    match (&report.predictions, report.predictions_baseline) {
        (Some(p), PredictionsBaseline::Reference) => {
            println!(
                "\nscores (last {} s) against each model's scores on {}:",
                args.window_seconds, args.reference
            );
            super::data::print_drift(global, p)?;
        }
        (Some(p), PredictionsBaseline::PreviousWindow) => {
            println!(
                "\noutputs: last {} s against the {} s before ({note}):",
                args.window_seconds, args.window_seconds
            );
            super::data::print_drift(global, p)?;
        }
        (None, _) => println!("\npredictions: {note}; no earlier window logged yet to compare with"),
    }
    Ok(())
}
