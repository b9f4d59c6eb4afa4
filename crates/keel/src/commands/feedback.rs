//! `keel feedback ingest`, in process or as a job of a running server (`--server URL`).

use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{FeedbackCommand, FeedbackIngestArgs, Global};
use crate::commands::batch::{open_deployments, print_refusals, progress_bar, run_remote, tick};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: FeedbackCommand) -> anyhow::Result<()> {
    let FeedbackCommand::Ingest(args) = cmd;
    ingest(global, args).await
}

async fn ingest(global: &Global, args: FeedbackIngestArgs) -> anyhow::Result<()> {
    let key = keel_batch::RewardKey::from_columns(
        args.decision_column.clone(),
        args.unit_column.clone(),
        args.run_id.clone(),
    )?;
    let mut metric_columns = std::collections::BTreeMap::new();
    for m in &args.metrics {
        let (name, column) = m.split_once('=').unwrap_or((m.as_str(), m.as_str()));
        if name.is_empty() || column.is_empty() {
            anyhow::bail!("--metric {m:?}: write NAME or NAME=COLUMN");
        }
        if metric_columns.insert(name.to_owned(), column.to_owned()).is_some() {
            anyhow::bail!("--metric {name} is given twice");
        }
    }
    if let Some(server) = &args.server {
        let request = keel_api::jobs::JobRequest::FeedbackIngest {
            deployment: args.deployment,
            from: args.from,
            decision_column: args.decision_column,
            unit_column: args.unit_column,
            run_id: args.run_id,
            reward_column: args.reward_column,
            metrics: metric_columns,
            batch_rows: Some(args.batch_rows),
        };
        let summary = run_remote(global, server, &request, "ingesting").await?;
        if global.json {
            return output::json(&summary);
        }
        let report: keel_batch::IngestReport =
            serde_json::from_value(summary).context("the server's job summary has an unexpected format")?;
        print_ingest(&report);
        return Ok(());
    }
    let ctx = Context::open(global).await?;
    let ws = keel_data::Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&principal(global)).await?;
    let deployments = open_deployments(&ctx, &args.deployment).await?;
    let job = keel_batch::IngestJob {
        deployment: args.deployment,
        from: args.from,
        key,
        reward_column: args.reward_column,
        metric_columns,
        batch_rows: args.batch_rows,
        files: true,
    };
    let control = keel_batch::Control::new();
    let bar = progress_bar(global, "ingesting");
    let ticker = tick(bar.clone(), control.clone());
    let report = keel_batch::ingest(&ws, &deployments, &caller, &job, &control).await;
    ticker.abort();
    bar.finish_and_clear();
    deployments.shutdown(Duration::from_secs(15)).await;
    let report = report?;
    if global.json {
        return output::json(&report);
    }
    print_ingest(&report);
    Ok(())
}

pub(crate) fn print_ingest(r: &keel_batch::IngestReport) {
    println!(
        "{} rows of feedback from {} for {}: {} counted, {} duplicate, {} late (window closed), {} refused in {:.1} s ({:.0} rows/s)",
        r.rows, r.source, r.deployment, r.counted, r.duplicate, r.late, r.refused, r.seconds, r.rows_per_second
    );
    print_refusals(r.late + r.refused, &r.refusals);
}
