//! Ingest throughput: streams one file into a fresh lake table and prints rows/s.
//!
//! Usage: `cargo run --release -p keel-lake --example ingest_bench -- FILE [RUNS]`
//! (see the crate README for how to make the 1,000,000 x 20 Parquet input).

use std::path::PathBuf;

use anyhow::Context;
use keel_lake::{IngestOptions, Lake};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = PathBuf::from(std::env::args().nth(1).context("usage: ingest_bench FILE [RUNS]")?);
    let runs: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    for run in 0..runs {
        let dir = tempfile::tempdir()?;
        let lake = Lake::open(dir.path())?;
        let report = lake.ingest("bench", &file, &IngestOptions::default()).await?;
        println!(
            "run {run}: {} rows, {:.1} MB in {:.2} s = {:.0} rows/s, {:.1} MB/s (version {})",
            report.rows,
            report.bytes as f64 / 1e6,
            report.seconds,
            report.rows as f64 / report.seconds,
            report.bytes as f64 / 1e6 / report.seconds,
            report.version
        );
    }
    Ok(())
}
