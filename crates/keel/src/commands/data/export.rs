//! `keel data export`.

use crate::cli::{ExportArgs, Global};
use crate::output;

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<()> {
    let (ws, caller) = super::catalogued::open(global).await?;
    let format: keel_data::ExportFormat = args.format.parse()?;
    let (table, version) = keel_lake::split_version(&args.table)?;
    let done = ws
        .export(&caller, table, version, format, &args.file, args.force)
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
