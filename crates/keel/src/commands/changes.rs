//! `keel changes`: the change log.

use crate::cli::{ChangesArgs, Global};
use crate::context::Context;
use crate::output;

pub async fn run(global: &Global, args: ChangesArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let changes = ctx
        .registry
        .store()
        .list_changes(args.limit, args.subject.as_deref())
        .await?;
    if global.json {
        return output::json(&changes);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                output::time(&c.at),
                c.actor.clone(),
                c.kind.clone(),
                c.subject.clone(),
                c.details.to_string(),
            ]
        })
        .collect();
    output::table(&["WHEN (UTC)", "WHO", "WHAT", "SUBJECT", "DETAILS"], &rows);
    Ok(())
}
