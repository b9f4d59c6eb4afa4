//! `keel batch score`.

use crate::cli::{BatchCommand, Global};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: BatchCommand) -> anyhow::Result<()> {
    let BatchCommand::Score(args) = cmd;
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
    let bar = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} scoring: {human_pos} rows ({per_sec}, {elapsed})")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    let report = keel_batch::score(&ws, &ctx.registry, &caller, &job, &|done| bar.set_position(done)).await;
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
            "scored {} rows of {}@v{} with {} version {} into {} (version {}) in {:.1} s ({:.0} rows/s), run {}",
            report.rows,
            report.input,
            report.input_version,
            report.model,
            report.model_version,
            report.output,
            report.output_version.map_or("-".into(), |v| v.to_string()),
            report.seconds,
            report.rows_per_second,
            report.run_id
        );
    }
    Ok(())
}
