//! Writes a small partitioned Delta table with two versions to the given directory, for the
//! Python `deltalake` interop test (`tests/python/test_deltalake_interop.py`).
//!
//! Usage: `cargo run -q -p keel-lake --example write_table -- PATH`. The lake root is PATH's
//! parent and the table is PATH's last component. PATH may be an `s3://bucket/prefix/table`
//! URL (endpoint and credentials from the `AWS_*` environment variables).
//!
//! Version 0: 3 rows (region eu, us). Version 1: 2 more rows (region eu, apac).

use std::path::PathBuf;

use anyhow::Context;
use keel_lake::{IngestOptions, Lake};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1).context("usage: write_table PATH")?;
    let (lake, table) = if arg.starts_with("s3://") {
        let (root, table) = arg
            .trim_end_matches('/')
            .rsplit_once('/')
            .context("PATH needs a table name")?;
        (Lake::open_location(root).await?, table.to_string())
    } else {
        let path = PathBuf::from(&arg);
        let root = path.parent().context("PATH needs a parent directory")?;
        let table = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("PATH needs a table name")?;
        (Lake::open(root)?, table.to_string())
    };
    let table = table.as_str();
    let scratch = tempfile::tempdir()?;
    let opts = IngestOptions {
        partition_by: Some("region".into()),
        ..IngestOptions::default()
    };

    let v0 = scratch.path().join("v0.csv");
    std::fs::write(&v0, "id,region,amount,label\n1,eu,10.5,a\n2,us,20.25,b\n3,eu,30.0,c\n")?;
    let r0 = lake.ingest(table, &v0, &opts).await?;

    let v1 = scratch.path().join("v1.jsonl");
    std::fs::write(
        &v1,
        "{\"id\":4,\"region\":\"eu\",\"amount\":1.5,\"label\":\"d\"}\n{\"id\":5,\"region\":\"apac\",\"amount\":2.5,\"label\":\"e\"}\n",
    )?;
    let r1 = lake.ingest(table, &v1, &opts).await?;
    println!(
        "{{\"versions\":[{},{}],\"rows\":{}}}",
        r0.version,
        r1.version,
        r0.rows + r1.rows
    );
    Ok(())
}
