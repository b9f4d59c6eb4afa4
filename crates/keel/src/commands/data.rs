//! `keel data ...`

use anyhow::Context as _;

use crate::cli::{DataCommand, Global};
use crate::output;

pub async fn run(global: &Global, cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
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
    }
    Ok(())
}
