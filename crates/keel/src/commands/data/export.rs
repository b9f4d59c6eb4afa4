//! `keel data export`.

use crate::cli::{ExportArgs, Global};
use crate::output;

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let (ws, caller) = super::catalogued::open(global).await?;
    let format: keel_data::ExportFormat = args.format.parse()?;
    let (table, version) = match args.table.rsplit_once("@v") {
        Some((table, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => (
            table.to_owned(),
            Some(
                v.parse::<u64>()
                    .map_err(|_| anyhow::anyhow!("version in {:?} is too large", args.table))?,
            ),
        ),
        _ => (args.table.clone(), None),
    };
    let done = ws
        .export(&caller, &table, version, format, &args.file, args.force)
        .await?;
    if global.json {
        return output::json(&done);
    }
    println!(
        "exported {} rows of {}@v{} to {} ({} bytes, {})",
        done.rows,
        done.table,
        done.version,
        done.path.display(),
        done.bytes,
        args.format
    );
    Ok(())
}
