//! Profile benchmark (not a test): `cargo run --release -p keel-assess --example profile_bench -- FILE.parquet [THREADS]`.
//! Prints the profile as JSON on stdout and the wall time on stderr; run it under `/usr/bin/time -v`
//! for the peak RSS.

use std::path::PathBuf;
use std::time::Instant;

use keel_assess::{ProfileOptions, profile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(file) = args.get(1) else {
        return Err("usage: profile_bench FILE.parquet [THREADS]".into());
    };
    let threads = args.get(2).map(|t| t.parse::<usize>()).transpose()?;
    let started = Instant::now();
    let p = profile(
        &[PathBuf::from(file)],
        &ProfileOptions {
            threads,
            ..ProfileOptions::default()
        },
    )?;
    let wall = started.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string_pretty(&p)?);
    eprintln!(
        "rows={} columns={} duplicate_rows={:?} duplicate_columns={:?} wall_seconds={wall:.3}",
        p.rows,
        p.columns.len(),
        p.duplicate_rows,
        p.duplicate_columns
    );
    Ok(())
}
