//! `keel batch score` and `keel batch decide`, in process or as a job of a running server
//! (`--server URL`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keel_api::jobs::JobRequest;
use keel_experiments::{Deployments, Durability};

use crate::cli::{BatchCommand, BatchDecideArgs, BatchScoreArgs, Global};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: BatchCommand) -> anyhow::Result<()> {
    match cmd {
        BatchCommand::Score(args) => score(global, args).await,
        BatchCommand::Decide(args) => decide(global, args).await,
    }
}

async fn score(global: &Global, args: BatchScoreArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let ws = keel_data::Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&principal(global)).await?;
    let job = keel_batch::ScoreJob {
        model: args.model,
        from: args.from,
        into: args.into,
        keep: args.keep,
        features: args.features,
        run_id: args.run_id,
        batch_rows: args.batch_rows,
    };
    let engine = engine(args.engine.as_deref(), job.batch_rows)?;
    let bar = progress_bar(global, "scoring");
    let report = keel_batch::score_on(
        &ws,
        &ctx.registry,
        &caller,
        &job,
        &|done| bar.set_position(done),
        engine.as_deref(),
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    if global.json {
        return output::json(&report);
    }
    if report.already_done {
        println!(
            "run {} was already written: {} rows of {} version {} in {} (version {}); nothing scored",
            report.run_id,
            report.rows,
            report.model,
            report.model_version,
            report.output,
            report.output_version.map_or("?".into(), |v| v.to_string())
        );
    } else {
        println!(
            "scored {} rows of {}@v{} with {} version {} into {} (version {}) in {:.1} s ({:.0} rows/s, {}), run {}",
            report.rows,
            report.input,
            report.input_version,
            report.model,
            report.model_version,
            report.output,
            report.output_version.map_or("-".into(), |v| v.to_string()),
            report.seconds,
            report.rows_per_second,
            report.engine,
            report.run_id
        );
    }
    Ok(())
}

/// The engine `--engine` names (`None`: score in this process).
#[cfg(feature = "cluster")]
fn engine(engine: Option<&str>, batch_rows: usize) -> anyhow::Result<Option<Box<dyn keel_batch::ScoreEngine>>> {
    Ok(match engine {
        None => None,
        Some(e) => Some(Box::new(keel_cluster::BallistaEngine::parse(e, batch_rows)?)),
    })
}

#[cfg(not(feature = "cluster"))]
fn engine(engine: Option<&str>, _batch_rows: usize) -> anyhow::Result<Option<Box<dyn keel_batch::ScoreEngine>>> {
    match engine {
        None => Ok(None),
        Some(e) => anyhow::bail!(
            "--engine {e}: this keel was built without the distributed engine; build it with \
             `cargo build -p keel --features cluster`, or score in process (no --engine)"
        ),
    }
}

async fn decide(global: &Global, args: BatchDecideArgs) -> anyhow::Result<()> {
    if let Some(server) = &args.server {
        let request = JobRequest::BatchDecide {
            deployment: args.deployment.clone(),
            from: args.from.clone(),
            unit_column: args.unit_column.clone(),
            into: args.into.clone(),
            run_id: args.run_id.clone(),
            batch_rows: Some(args.batch_rows),
        };
        let summary = run_remote(global, server, &request, "deciding").await?;
        if global.json {
            return output::json(&summary);
        }
        let report: keel_batch::DecideReport =
            serde_json::from_value(summary).context("the server's job summary has an unexpected format")?;
        print_decide(&report);
        return Ok(());
    }
    let ctx = Context::open(global).await?;
    let ws = keel_data::Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&principal(global)).await?;
    let deployments = open_deployments(&ctx, &args.deployment).await?;
    let job = keel_batch::DecideJob {
        deployment: args.deployment,
        from: args.from,
        unit_column: args.unit_column,
        into: args.into,
        run_id: args.run_id,
        batch_rows: args.batch_rows,
    };
    let control = keel_batch::Control::new();
    let bar = progress_bar(global, "deciding");
    let ticker = tick(bar.clone(), control.clone());
    let report = keel_batch::decide(&ws, &deployments, &caller, &job, &control).await;
    ticker.abort();
    bar.finish_and_clear();
    deployments.shutdown(Duration::from_secs(15)).await;
    let report = report?;
    if global.json {
        return output::json(&report);
    }
    print_decide(&report);
    Ok(())
}

pub(crate) fn print_decide(r: &keel_batch::DecideReport) {
    println!(
        "{} rows of {}@v{}: {} decided by {} into {} (version {}) in {:.1} s ({:.0} rows/s), run {}",
        r.rows,
        r.input,
        r.input_version,
        r.decided,
        r.deployment,
        r.output,
        r.output_version.map_or("-".into(), |v| v.to_string()),
        r.seconds,
        r.rows_per_second,
        r.run_id
    );
    if r.already_written > 0 {
        println!(
            "{} units were already decided and written by this run: not decided again",
            r.already_written
        );
    }
    if r.recovered > 0 {
        println!(
            "{} decisions this run had logged but not written were written now (not decided again)",
            r.recovered
        );
    }
    if r.duplicates > 0 {
        println!(
            "{} rows repeat a unit seen earlier in the input: decided once",
            r.duplicates
        );
    }
    print_refusals(r.refused, &r.refusals);
}

pub(crate) fn print_refusals(refused: u64, refusals: &keel_batch::Refusals) {
    if refusals.is_empty() {
        return;
    }
    if refused > 0 {
        println!("{refused} rows refused:");
    }
    for (code, r) in refusals.iter() {
        println!("  {code}: {} rows", r.rows);
        for e in &r.examples {
            println!("    {}: {}", e.row, e.error);
        }
    }
}

pub(crate) fn progress_bar(global: &Global, what: &str) -> indicatif::ProgressBar {
    let bar = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what}: {{human_pos}} rows ({{per_sec}}, {{elapsed}})"
    )) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Copies a job's rows so far into the bar, a few times a second.
pub(crate) fn tick(bar: indicatif::ProgressBar, control: keel_batch::Control) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            bar.set_position(control.rows());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The deployments of this keel home, opened in this process to run a job on `name`. Refused
/// with what to do when a running server holds the deployment's decision log.
pub(crate) async fn open_deployments(ctx: &Context, name: &str) -> anyhow::Result<Arc<Deployments>> {
    keel_experiments::validate_name(name)?;
    let held = || {
        anyhow::anyhow!(
            "deployment '{name}' is served by a running keel server (its decision log is locked by it); \
             run the job in that server with --server URL (e.g. --server http://127.0.0.1:8080)"
        )
    };
    let lock = keel_experiments::offline::ope::decision_log_dir(&ctx.home, name).join("writer.lock");
    if let Ok(file) = std::fs::File::open(&lock) {
        match file.try_lock() {
            Ok(()) => drop(file),
            Err(std::fs::TryLockError::WouldBlock) => return Err(held()),
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    let deployments = Deployments::open(
        ctx.registry.store().clone(),
        ctx.home.join("experiments"),
        Durability::Fsync,
    )
    .await?;
    if let Some(failed) = deployments.failed().into_iter().find(|f| f.name == name) {
        if failed.held_elsewhere {
            return Err(held());
        }
        anyhow::bail!("deployment '{name}' cannot start: {}", failed.reason);
    }
    Ok(deployments)
}

/// Starts a job in the server at `url` (`POST /v1/jobs`), follows it to its end with a progress
/// bar, and returns its summary; a failed or cancelled job is an error.
pub(crate) async fn run_remote(
    global: &Global,
    url: &str,
    request: &JobRequest,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::new();
    let with_token = |r: reqwest::RequestBuilder| match &global.token {
        Some(token) => r.bearer_auth(token),
        None => r,
    };
    let response = with_token(client.post(format!("{base}/v1/jobs")).json(request))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let started: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "the server refused the job ({status}): {}",
            started["error"].as_str().unwrap_or("no reason given")
        );
    }
    let id = started["id"]
        .as_str()
        .context("the server's answer names no job id")?
        .to_owned();
    let bar = progress_bar(global, what);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = with_token(client.get(format!("{base}/v1/jobs/{id}")))
            .send()
            .await
            .with_context(|| format!("cannot reach {base} to follow job {id}"))?;
        let status = response.status();
        let job: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bar.finish_and_clear();
            anyhow::bail!(
                "cannot follow job {id} ({status}): {}",
                job["error"].as_str().unwrap_or("no reason given")
            );
        }
        bar.set_position(job["rows"].as_u64().unwrap_or(0));
        match job["state"].as_str().unwrap_or("") {
            "succeeded" => {
                bar.finish_and_clear();
                return Ok(job["summary"].clone());
            }
            "failed" | "cancelled" => {
                bar.finish_and_clear();
                anyhow::bail!(
                    "job {id} {}: {}",
                    job["state"].as_str().unwrap_or(""),
                    job["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {}
        }
    }
}
