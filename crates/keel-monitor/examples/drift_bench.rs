//! End-to-end drift benchmark (not a test): `cargo run --release --example drift_bench -- REF CUR [THREADS]`.
//! Prints the JSON report; run it under `/usr/bin/time -v` for the peak RSS.

use std::path::Path;

use keel_monitor::{DriftOptions, drift_files};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: drift_bench REF CUR [THREADS] [METHOD]".into());
    }
    let threads = args.get(3).map(|t| t.parse::<usize>()).transpose()?;
    let method = args.get(4).map(|m| m.parse()).transpose()?.unwrap_or_default();
    let options = DriftOptions {
        threads,
        method,
        ..Default::default()
    };
    let report = drift_files(Path::new(&args[1]), Path::new(&args[2]), &options)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "columns={} drifted={:?} dataset_drift={} seconds={:.3}",
        report.columns.len(),
        report.drifted_columns,
        report.dataset_drift,
        report.seconds
    );
    Ok(())
}
